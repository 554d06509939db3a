"""The start steps of an agent in k8s mode, from what the watches already hold: a pure function.

Each step is read from one object (see :data:`~..progress.K8S_PLAN`), with the object's own
time where it has one: the StatefulSet's creation (applied), the claim's phase (bound), the
pod's ``PodScheduled`` and ``Ready`` conditions, and its container's status (the image is on
the node once the kubelet reports its ``imageID`` or runs it; started at ``startedAt``). No
request is made for them: the Events of pods are not watched, and a step they alone would
tell (``Pulled``) is implied by the next one. An agent made from a warm pool's member adds
``claimed`` (its time, and ``bound``, only the replica that claimed it knows).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..progress import CLAIMED, FIRST_MESSAGE, Fact
from ..suspension import parse_time
from .model import AgentObjects

Obj = Mapping[str, Any]


def _condition(pod: Obj, kind: str) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def _time(text: Any) -> datetime | None:
    return parse_time(text) if isinstance(text, str) and text else None


def start_facts(objects: AgentObjects, first_message_delivered: bool = False, pool: str | None = None) -> dict[str, Fact]:
    """The steps of the agent's start its objects show reached; ``pool``: the agent was made
    from a member of that pool, claimed (its steps are :func:`~..progress.claim_plan`'s, which
    take ``claimed`` and those from ``agentapi_answering`` on)."""
    facts: dict[str, Fact] = {}
    if pool is not None:
        facts[CLAIMED] = Fact(None, f"a member of pool {pool!r} is claimed")
    sts, pod, pvc = objects.statefulset, objects.pod, objects.pvc
    if sts is not None:
        facts["applied"] = Fact(_time(sts["metadata"].get("creationTimestamp")),
                                f"StatefulSet {sts['metadata'].get('name')} and its objects are applied")
    if pvc is not None and (pvc.get("status") or {}).get("phase") == "Bound":
        volume = (pvc.get("spec") or {}).get("volumeName")
        facts["volume_bound"] = Fact(None, f"claim {pvc['metadata'].get('name')} is bound"
                                     + (f" to {volume}" if volume else ""))
    if pod is not None and not pod["metadata"].get("deletionTimestamp"):
        scheduled = _condition(pod, "PodScheduled")
        node = (pod.get("spec") or {}).get("nodeName")
        if scheduled is not None or node:
            facts["scheduled"] = Fact(_time((scheduled or {}).get("lastTransitionTime")),
                                      f"pod {pod['metadata'].get('name')} is placed on node {node}")
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            state = container.get("state") or {}
            running = state.get("running")
            if container.get("imageID") or running or state.get("terminated"):
                facts["image_ready"] = Fact(None, f"image {container.get('image')} is on the node")
            if running:
                facts["container_started"] = Fact(_time(running.get("startedAt")),
                                                  f"container {container.get('name')} started")
        ready = _condition(pod, "Ready")
        if ready is not None:
            facts["agentapi_answering"] = Fact(_time(ready.get("lastTransitionTime")),
                                               "agentapi answers with its conversation back (the pod is Ready)")
    if first_message_delivered:
        facts[FIRST_MESSAGE] = Fact(None, "the first message is in the conversation")
    return facts
