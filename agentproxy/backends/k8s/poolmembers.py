"""Warm pool members in k8s mode, as pure functions of their objects: no cluster, no I/O.

A member is a full agent (``agent-ID`` StatefulSet, headless Service, ConfigMap and PVC) of
its pool's shape, in :data:`~agentproxy.pools.POOL_SESSION`, owned by nobody, whose
ConfigMap (its claim on the id) carries the labels :data:`~agentproxy.pools.LABEL_POOL` and
:data:`~agentproxy.pools.LABEL_SHAPE`. Its launcher waits for its binding (see
:func:`agentproxy.render.binding_volume`) with a token kept in a Secret of its own.

- :func:`pool_of`, :func:`member_view`, :func:`member_state`: which objects are a member, of
  which pool and shape, and whether it is warming, ready (its launcher waits) or failed;
- :func:`claim_patch`: the claim, one JSON merge patch of the member's ConfigMap carrying its
  ``resourceVersion``: of two proxies claiming one member at once, exactly one succeeds (the
  other gets 409 Conflict), and after it the agent is its owner's (spec, labels, variables);
  :func:`claim_outcome`: whether a claim whose write got no answer was applied;
- :func:`binding_secret`, :func:`token_of`, :func:`binding_url`: the member's token and
  where its launcher listens.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ... import naming
from ...pools import FAILED, LABEL_POOL, LABEL_SHAPE, POOL_SESSION, READY, WARMING, Member
from ...render import BINDING_KEY, BINDING_PORT, binding_secret_name
from .model import AgentObjects, Obj, created_at

BINDING_COMPONENT = "binding"
"""The ``app.kubernetes.io/component`` of a member's binding Secret."""
CLAIM_ANNOTATION = "agentproxy.io/pool-claim"
"""The annotation a claim writes on the member's ConfigMap: a random mark of that one claim, by
which a create whose write got no answer tells whether the write was applied (see
:func:`claim_outcome`)."""
OURS, NOT_OURS = "ours", "not-ours"
ORPHAN_GRACE = 30.0
"""Seconds a member's StatefulSet may be seen without its ConfigMap (the watches of the two kinds
are separate) before it counts as half-made and is replaced."""
BROKEN_WAITING_REASONS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                    "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
"""Why a container that waits will not start by itself: its member is replaced."""


def pool_of(obj: Obj | None) -> str | None:
    """The pool an object is a member of (its :data:`LABEL_POOL` label), or None."""
    return ((obj or {}).get("metadata", {}).get("labels") or {}).get(LABEL_POOL)


def shape_label(obj: Obj | None) -> str:
    """The shape a member was made with (its :data:`LABEL_SHAPE` label)."""
    return str(((obj or {}).get("metadata", {}).get("labels") or {}).get(LABEL_SHAPE) or "")


def is_member(objects: AgentObjects) -> bool:
    """True for the objects of an unclaimed member: its ConfigMap (the claim; a claim removes the
    label) or, while that is missing, its StatefulSet is labelled for a pool."""
    return pool_of(objects.claim if objects.claim is not None else objects.statefulset) is not None


def member_state(objects: AgentObjects, now: datetime, warm_timeout: float) -> str:
    """:data:`~agentproxy.pools.READY` once the member's pod has an IP and its container has
    started (its startup probe passes while the launcher waits; a Ready pod has started too);
    :data:`~agentproxy.pools.FAILED` when its container restarted, ended or cannot start, when
    it is not ready ``warm_timeout`` seconds after it was made, or when its ConfigMap has been
    missing for :data:`ORPHAN_GRACE` seconds (half-made by a crash); else
    :data:`~agentproxy.pools.WARMING`. A member without its ConfigMap is never ready: no
    claim could take it."""
    pod = objects.pod
    if pod is not None and not pod["metadata"].get("deletionTimestamp"):
        status = pod.get("status") or {}
        if status.get("phase") in ("Failed", "Succeeded"):
            return FAILED
        containers = status.get("containerStatuses") or []
        for container in containers:
            state = container.get("state") or {}
            # A member's launcher never ends while it waits: one that did (no token, a bad
            # image) would come back waiting for a binding the proxy may already be sending.
            if container.get("restartCount", 0) > 0 or "terminated" in state:
                return FAILED
            if (state.get("waiting") or {}).get("reason") in BROKEN_WAITING_REASONS:
                return FAILED
        started = bool(containers) and all(c.get("started") for c in containers)
        if status.get("podIP") and (started or _pod_ready(pod)) and objects.claim is not None:
            return READY
    made = objects.claim if objects.claim is not None else objects.statefulset
    age = (now - created_at(made)).total_seconds()
    if objects.claim is None and age > ORPHAN_GRACE:
        return FAILED  # half-made (a crash between its objects): no claim can take it
    if age > warm_timeout:
        return FAILED
    return WARMING


def _pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def member_view(agent_id: str, objects: AgentObjects, now: datetime, warm_timeout: float) -> Member | None:
    """The member as the pure refill plan sees it (None when the objects are not a member's,
    or are being deleted)."""
    made = objects.claim if objects.claim is not None else objects.statefulset
    pool = pool_of(made)
    if pool is None or made is None:
        return None
    if any(o is not None and o["metadata"].get("deletionTimestamp") for o in (objects.claim, objects.statefulset)):
        return None
    return Member(agent_id, pool, shape_label(made), member_state(objects, now, warm_timeout))


def claim_patch(live: Obj, rendered: Obj, mark: str | None = None) -> dict[str, Any]:
    """The claim of a member: the JSON merge patch that turns its live ConfigMap into
    ``rendered`` (the owner's agent's, as :func:`agentproxy.render.render_agent` makes it):
    its labels (the pool's go), its spec annotations and its data (the owner's variables and
    first message, and the word that it is bound, for a container that restarts). It carries
    the ``resourceVersion`` it was read at: the API server applies it only to that version.
    ``mark`` (random, one per claim) is written as :data:`CLAIM_ANNOTATION`."""
    live_meta, meta = live["metadata"], rendered["metadata"]
    labels: dict[str, Any] = {key: None for key in (live_meta.get("labels") or {}) if key not in meta["labels"]}
    labels.update(meta["labels"])
    data: dict[str, Any] = {key: None for key in (live.get("data") or {}) if key not in (rendered.get("data") or {})}
    data.update(rendered.get("data") or {})
    annotations = dict(meta.get("annotations") or {})
    if mark is not None:
        annotations[CLAIM_ANNOTATION] = mark
    return {"metadata": {"resourceVersion": live_meta["resourceVersion"], "labels": labels,
                         "annotations": annotations},
            "data": data}


def claim_outcome(current: Obj | None, mark: str) -> str:
    """Whether the claim marked ``mark``, whose write got no answer, was applied, from the
    member's ConfigMap read back: :data:`OURS` (it carries the mark: the agent is this
    create's) or :data:`NOT_OURS` (still a member, claimed by another create, or gone)."""
    if current is None or current["metadata"].get("deletionTimestamp"):
        return NOT_OURS
    return OURS if ((current["metadata"].get("annotations") or {}).get(CLAIM_ANNOTATION) == mark) else NOT_OURS


def binding_secret(namespace: str, agent_id: str, token: str, configmap: Obj) -> dict[str, Any]:
    """The Secret of a member's token, owned by its ConfigMap (it goes with the member). Its
    pod alone mounts it; no template renders it (the token is never in a render's output)."""
    meta = configmap["metadata"]
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {
        "name": binding_secret_name(agent_id), "namespace": namespace,
        "labels": naming.standard_labels(agent_id, POOL_SESSION, component=BINDING_COMPONENT),
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": meta["name"], "uid": meta["uid"]}]},
        "data": {BINDING_KEY: base64.b64encode(token.encode()).decode("ascii")}}


def token_of(secret: Mapping[str, Any] | None) -> str | None:
    """The token of a member's binding Secret (None when there is none)."""
    encoded = ((secret or {}).get("data") or {}).get(BINDING_KEY)
    if not encoded:
        return None
    try:
        return base64.b64decode(encoded).decode().strip() or None
    except (ValueError, UnicodeDecodeError):
        return None


def binding_url(pod: Obj | None, path: str) -> str | None:
    """Where the member's launcher takes its binding: its pod's IP, the binding port (None
    while the pod has no IP)."""
    ip = ((pod or {}).get("status") or {}).get("podIP")
    if not ip:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{BINDING_PORT}{path}"
