"""What the k8s backend decides, as pure functions of objects: no cluster, no I/O.

- the agent's objects and its state, derived from what the cache holds;
- suspension: the replicas and annotation of a suspended agent, and its clock of activity;
- the ownerReference to an agent's StatefulSet (what it owns, in which order objects are
  applied and which are forced is :mod:`.plan`'s);
- the objects a delete (or a failed create's rollback) removes;
- drift (does a live object still hold what is applied? see :mod:`.drift`) and strays to prune;
- when a claim whose create never finished is abandoned;
- the progress ``agentproxy apply --wait`` shows and the diff ``agentproxy diff`` prints.

The backend, its reconciler and the command line call these; none of them
writes such a rule on its own.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from ... import naming
from ...settings import AGENT_PORT
from ...spec import AgentSpec
from ..base import AgentState, AgentStatus
from ..conversation import FIRST_MESSAGE_PENDING
from ..suspension import SUSPENDED_REASON, SUSPENDING_REASON, Suspension, parse_time, timestamp
from . import drift
from .kinds import CONFIGMAP, POD, PVC, SERVICE, STATEFULSET, Kind
from .questions import question_of
from .status import derive_status

Obj = Mapping[str, Any]
MODE = "k8s"

SPEC_ANNOTATION = "agentproxy.io/spec"
"""The agent's spec as JSON, on its ConfigMap (the claim) and StatefulSet."""
SPEC_HASH_ANNOTATION = "agentproxy.io/spec-hash"
"""The spec's fingerprint, beside it."""
SUSPENDED_ANNOTATION = naming.ANNOTATION_SUSPENDED
LAST_ACTIVE_ANNOTATION = naming.ANNOTATION_LAST_ACTIVE



# --- the objects of one agent ------------------------------------------------------------------

@dataclass(frozen=True)
class AgentObjects:
    """An agent's objects as the cache holds them (any of them may be missing)."""

    claim: Obj | None  # the ConfigMap, created first
    statefulset: Obj | None
    pod: Obj | None
    pvc: Obj | None
    events: tuple[Obj, ...] = ()
    """Events about the StatefulSet and the claim (what their controllers could not do)."""
    service: Obj | None = None
    """The headless Service."""

    @classmethod
    def of(cls, agent_id: str, get: Callable[[Kind, str], Obj | None], events: Iterable[Obj] = ()) -> AgentObjects:
        """The objects of ``agent_id`` read through ``get(kind, name)``, and its ``events``."""
        return cls(get(CONFIGMAP, naming.configmap_name(agent_id)), get(STATEFULSET, naming.statefulset_name(agent_id)),
                   get(POD, naming.pod_name(agent_id)), get(PVC, naming.pvc_name(agent_id)), tuple(events),
                   get(SERVICE, naming.headless_service_name(agent_id)))


def annotation(obj: Obj | None, key: str) -> str | None:
    """An annotation of ``obj`` (None when there is no object or no such annotation)."""
    return ((obj or {}).get("metadata", {}).get("annotations") or {}).get(key)


def agent_id_of(obj: Obj) -> str | None:
    """The agent an object belongs to, by its label."""
    return (obj["metadata"].get("labels") or {}).get(naming.LABEL_AGENT_ID)


_NAMED: dict[str, tuple[str, str, str]] = {
    CONFIGMAP.name: ("configmap", "agent-", "-config"), STATEFULSET.name: ("statefulset", "agent-", ""),
    POD.name: ("pod", "agent-", "-0"), PVC.name: ("pvc", "data-agent-", "-0"),
    SERVICE.name: ("service", "agent-", "-headless"),
}
"""For each kind: its key in :func:`agentproxy.naming.object_names`, and the text around the agent id."""


def agent_named(kind: Kind, name: str) -> str | None:
    """The agent an object of ``kind`` is named for (whatever its labels say), or None."""
    key, prefix, suffix = _NAMED.get(kind.name, ("", "", ""))
    if not key or not name.startswith(prefix) or not name.endswith(suffix):
        return None
    agent_id = name[len(prefix):len(name) - len(suffix)]
    if not naming.is_valid_agent_id(agent_id) or naming.object_names(agent_id)[key] != name:
        return None
    return agent_id


class SpecReader:
    """Specs from the spec annotation of the claim, else of the StatefulSet. Parsed specs are
    remembered by their text: listing a thousand agents must not parse a thousand JSON documents."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._parsed: dict[str, AgentSpec] = {}
        self._max = max_entries

    def spec(self, objects: AgentObjects) -> AgentSpec | None:
        """The agent's spec, or None when neither object holds a readable one."""
        for obj in (objects.claim, objects.statefulset):
            text = annotation(obj, SPEC_ANNOTATION)
            if text:
                spec = self.parse(text)
                if spec is not None:
                    return spec
        return None

    def parse(self, text: str) -> AgentSpec | None:
        """The spec of an annotation's text, None when it is not one."""
        cached = self._parsed.get(text)
        if cached is None:
            try:
                cached = AgentSpec.from_json(text)
            except ValueError:
                return None
            if len(self._parsed) >= self._max:
                self._parsed.clear()
            self._parsed[text] = cached
        return cached


def created_at(obj: Obj | None) -> datetime:
    """The creation time of an object (now, for one the server has not stored yet)."""
    text = ((obj or {}).get("metadata") or {}).get("creationTimestamp")
    if not text:
        return datetime.now(UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def agent_state(spec: AgentSpec, objects: AgentObjects, *, namespace: str, pod_address: str,
                first_message_overdue: str | None = None) -> AgentState:
    """The agent's state from its objects: status from StatefulSet, Pod and PVC; the upstream
    once the pod has an IP (by pod IP or headless-Service name, ``pod_address``); the reason
    ``FirstMessagePending`` while a ready agent's first message is overdue; the question its
    current pod asks (see :mod:`.questions`) while it is ready."""
    names = naming.object_names(spec.id)
    derived = derive_status(objects.statefulset, objects.pod, objects.pvc, objects.events)
    if objects.statefulset is None and objects.claim is not None and derived.status is AgentStatus.STOPPED:
        derived = type(derived)(AgentStatus.PENDING, "NotApplied", "the StatefulSet has not been applied yet")
    suspension = suspension_of(objects.statefulset)
    if suspension is not None and not (objects.statefulset or {})["metadata"].get("deletionTimestamp"):
        derived = (type(derived)(AgentStatus.STOPPING, SUSPENDING_REASON, "the pod is stopping; its volume is kept",
                                 derived.restarts) if objects.pod is not None else
                   type(derived)(AgentStatus.SUSPENDED, SUSPENDED_REASON, suspension.message()))
    pod = objects.pod or {}
    pod_ip = (pod.get("status") or {}).get("podIP")
    upstream = None
    if pod_ip and derived.status in (AgentStatus.READY, AgentStatus.STARTING):
        host = pod_ip if pod_address == "pod_ip" else f"{names['pod']}.{names['service']}.{namespace}.svc"
        upstream = f"http://{host}:{AGENT_PORT}"
    if first_message_overdue and derived.status is AgentStatus.READY:
        derived = dataclasses.replace(derived, reason=FIRST_MESSAGE_PENDING, message=first_message_overdue)
    return AgentState(
        spec=spec, mode=MODE, status=derived.status, reason=derived.reason, message=derived.message,
        created_at=created_at(objects.claim or objects.statefulset), upstream=upstream, restarts=derived.restarts,
        details={"namespace": namespace, **names, "pod_ip": pod_ip, "node": (pod.get("spec") or {}).get("nodeName"),
                 **start_details(spec)},
        suspended=suspension is not None, last_active=last_active(objects.statefulset, objects.pod),
        question=question_of(objects.statefulset, objects.pod) if derived.status is AgentStatus.READY else None,
    )


def start_details(spec: AgentSpec) -> dict[str, str]:
    """``start``: ``warm`` for an agent a pool member was claimed for (with its ``pool``), else ``cold``."""
    return {"start": "warm", "pool": spec.pool} if spec.pool is not None else {"start": "cold"}


def applied_state(spec: AgentSpec, namespace: str, when: datetime) -> AgentState:
    """A new agent whose objects are applied and of which nothing runs yet."""
    return AgentState(spec=spec, mode=MODE, status=AgentStatus.PENDING, created_at=when, reason="Applied",
                      message="objects applied; waiting for the cluster",
                      details={"namespace": namespace, **naming.object_names(spec.id), **start_details(spec)})


def deleting_state(state: AgentState, purge: bool) -> AgentState:
    """What a delete answers: the objects are being deleted; the data is kept unless purged."""
    return AgentState(spec=state.spec, mode=MODE, status=AgentStatus.STOPPING, created_at=state.created_at,
                      reason="Deleting", message="purging data too" if purge else "data is kept",
                      details=state.details)


# --- suspension --------------------------------------------------------------------------------

def suspension_of(statefulset: Obj | None) -> Suspension | None:
    """The suspension of an agent whose StatefulSet carries the suspended annotation, else None."""
    text = annotation(statefulset, SUSPENDED_ANNOTATION)
    return Suspension.from_json(text) if text is not None else None


def desired_replicas(suspension: Suspension | None) -> int:
    """The agent's replicas: none while it is suspended, else its one pod. The only place that
    says so: every apply of the StatefulSet (create, repeat, suspend, resume, repair) renders
    with the values of :func:`workload`."""
    return 0 if suspension is not None else 1


def workload(suspension: Suspension | None) -> dict[str, Any]:
    """The StatefulSet's ``replicas`` and ``suspension`` (its annotation) for the templates."""
    return {"replicas": desired_replicas(suspension),
            "suspension": suspension.to_json() if suspension is not None else None}


def last_active(statefulset: Obj | None, pod: Obj | None) -> datetime | None:
    """When the agent was last in use: the later of the last-active annotation (requests seen
    by any proxy) and the time its pod became ready."""
    seen = [t for t in (parse_time(annotation(statefulset, LAST_ACTIVE_ANNOTATION)), _ready_since(pod)) if t]
    return max(seen) if seen else None


def _ready_since(pod: Obj | None) -> datetime | None:
    for condition in ((pod or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime"))
    return None


def activity_patch(when: datetime) -> dict[str, Any]:
    """The merge patch that sets the last-active annotation (written beside the applied
    fields, under a field manager of its own, so that applies neither remove nor fight it)."""
    return {"metadata": {"annotations": {LAST_ACTIVE_ANNOTATION: timestamp(when)}}}


def unless_changed(obj: Obj, resource_version: str) -> dict[str, Any]:
    """A copy of ``obj`` whose apply fails (409) if the object was changed since ``resource_version``:
    of several proxies suspending or resuming one agent at once, exactly one does it."""
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": resource_version}}


# --- applying and deleting ---------------------------------------------------------------------

def statefulset_of(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The StatefulSet among an agent's rendered objects."""
    return next(o for o in objects if o["kind"] == STATEFULSET.name)


def owner_reference(statefulset: Obj) -> dict[str, Any]:
    """The ownerReference to an agent's StatefulSet, as the server stored it."""
    meta = statefulset["metadata"]
    return {"apiVersion": STATEFULSET.api_version, "kind": STATEFULSET.name, "name": meta["name"],
            "uid": meta["uid"]}


def with_owner(obj: Obj, owner: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` owned by ``owner`` (deleted with it by the garbage collector). Only
    its metadata is copied: the rest is shared with ``obj``, which stays as it was."""
    return {**obj, "metadata": {**obj["metadata"], "ownerReferences": [owner]}}


def whole(objects: AgentObjects) -> bool:
    """True when every step of a create was carried out: the claim is there, and the last step
    made the Service owned by the StatefulSet."""
    sts, claim, service = objects.statefulset, objects.claim, objects.service
    if sts is None or claim is None or service is None or not sts["metadata"].get("uid"):
        return False
    uid = sts["metadata"]["uid"]
    return any(ref.get("uid") == uid for ref in service["metadata"].get("ownerReferences") or [])


def delete_targets(agent_id: str, *, purge: bool) -> list[tuple[Kind, str]]:
    """What a delete removes, in order: the StatefulSet first (from then on no proxy re-applies
    the rest), then the Service and the ConfigMap, and with ``purge`` the PVC (the data)."""
    names = naming.object_names(agent_id)
    targets = [(STATEFULSET, names["statefulset"]), (SERVICE, names["service"]), (CONFIGMAP, names["configmap"])]
    if purge:
        targets.append((PVC, names["pvc"]))
    return targets


# --- drift and strays --------------------------------------------------------------------------

differences = drift.differences
drifted = drift.drifted


def abandoned_claim(objects: AgentObjects, now: datetime, grace: float) -> float | None:
    """For a claim without a StatefulSet (a create under way, or one that never finished): 0 when
    the claim is older than ``grace`` seconds and may be removed, else the seconds left until
    then. None when the agent has no such claim."""
    if objects.claim is None or objects.statefulset is not None:
        return None
    if objects.claim["metadata"].get("deletionTimestamp"):
        return None
    age = (now - created_at(objects.claim)).total_seconds()
    return max(0.0, grace - age)


STRAY_KINDS = (SERVICE, CONFIGMAP)
"""Kinds of which an agent has one object by name: others labelled for it are strays."""


def strays(agent_id: str, kind: Kind, labelled: Iterable[Obj], *, orphaned: bool) -> list[str]:
    """Names of objects of ``kind`` labelled for the agent that the templates do not render
    (another name), or all of them when the agent is ``orphaned`` (no spec, no StatefulSet)."""
    expected = naming.object_names(agent_id)["service" if kind is SERVICE else "configmap"]
    return [obj["metadata"]["name"] for obj in labelled
            if agent_id_of(obj) == agent_id and (orphaned or obj["metadata"]["name"] != expected)]


# --- for the command line ----------------------------------------------------------------------

def progress(state: AgentState, pod: Obj | None, pvc: Obj | None) -> list[str]:
    """The phases an agent has reached: applied, scheduled, volume bound, ready."""
    phases = ["applied"]
    if ((pod or {}).get("spec") or {}).get("nodeName"):
        phases.append("scheduled")
    if ((pvc or {}).get("status") or {}).get("phase") == "Bound":
        phases.append("volume bound")
    if state.status is AgentStatus.READY:
        phases.append("ready")
    return phases


_VOLATILE_METADATA = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def _for_diff(obj: Obj | None) -> list[str]:
    if not obj:
        return []
    clean = json.loads(json.dumps(obj))
    clean.pop("status", None)
    meta = clean.get("metadata", {})
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    return yaml.safe_dump(clean, sort_keys=True).splitlines(keepends=True)


def object_diff(live: Obj | None, merged: Obj) -> list[str]:
    """A unified diff from the live object to what an apply would make of it, without status
    and server-kept metadata; empty when the apply changes nothing."""
    label = f"{merged['kind']}/{merged['metadata']['name']}"
    return list(difflib.unified_diff(_for_diff(live), _for_diff(merged), f"live/{label}", f"merged/{label}"))
