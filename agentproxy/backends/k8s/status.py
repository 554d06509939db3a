"""An agent's status from its StatefulSet, Pod and PVC: a pure function.

The rules follow what ``kubectl get``/``describe`` shows a person: a pod the
scheduler cannot place, an image that cannot be pulled, a container in a
crash loop or a claim that stays unbound are failures with the platform's own
reason and message; everything on the way to Ready is pending or starting.
What only Events tell is read from the latest Event of the object: a pod the
StatefulSet controller could not create (a quota, admission) and a claim that
cannot be provisioned or bound (no such StorageClass, none at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base import AgentStatus

Obj = Mapping[str, Any]

# Container waiting reasons that will not resolve without a change of spec or platform.
_FATAL_WAITING = {
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff", "RunContainerError",
}


@dataclass(frozen=True)
class Derived:
    """Status, reason, message and restart count of one agent."""

    status: AgentStatus
    reason: str | None = None
    message: str | None = None
    restarts: int = 0


def _conditions(obj: Obj | None) -> dict[str, Obj]:
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _container_statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


# Events of a claim after which it will not be bound without help.
_CLAIM_STUCK = {"ProvisioningFailed", "FailedBinding"}


def latest_event(events: Iterable[Obj], obj: Obj | None) -> Obj | None:
    """The most recent Event about ``obj`` itself (the object of that name made before it does not count)."""
    if obj is None:
        return None
    uid = obj["metadata"].get("uid")
    about = [e for e in events if (e.get("involvedObject") or {}).get("uid") == uid and uid]
    return max(about, key=_event_time, default=None)


def _event_time(event: Obj) -> str:
    # RFC 3339 at one resolution compares as text; eventTime (newer API) has microseconds.
    when = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp") or ""
    return when[:19]


def derive_status(sts: Obj | None, pod: Obj | None, pvc: Obj | None, events: Iterable[Obj] = ()) -> Derived:
    """Status of an agent from its objects (any of them may be missing) and the Events about its
    StatefulSet and claim."""
    events = tuple(events)
    if sts is None:
        if pod is not None:
            return Derived(AgentStatus.STOPPING, "Terminating", "the pod is shutting down")
        return Derived(AgentStatus.STOPPED)
    if sts["metadata"].get("deletionTimestamp"):
        return Derived(AgentStatus.STOPPING, "Terminating", "the agent is being deleted")
    if (sts.get("spec") or {}).get("replicas", 1) == 0:
        return Derived(AgentStatus.STOPPED, "ScaledDown", "the StatefulSet has no replicas")
    if pod is None:
        claim = _claim_problem(pvc, events)
        if claim is not None:
            return claim
        event = latest_event(events, sts)
        if event is not None and event.get("reason") == "FailedCreate" and not _passing(event):
            return Derived(AgentStatus.FAILED, "FailedCreate", event.get("message") or "the pod could not be created")
        return Derived(AgentStatus.PENDING, "PodNotCreated", "waiting for the StatefulSet controller to create the pod")
    return _from_pod(pod, pvc, events)


def _passing(event: Obj) -> bool:
    """A FailedCreate the controller's next try gets past: what it would create exists already
    (the claim this proxy applied before the StatefulSet, which the controller's own cache of
    claims had not shown yet; it retries at once)."""
    return "already exists" in (event.get("message") or "")


def _claim_problem(pvc: Obj | None, events: Iterable[Obj] = ()) -> Derived | None:
    if pvc is None:
        return None
    phase = (pvc.get("status") or {}).get("phase")
    if phase == "Lost":
        return Derived(AgentStatus.FAILED, "ClaimLost", f"PersistentVolumeClaim {pvc['metadata']['name']} lost its volume")
    if phase in (None, "Pending"):
        event = latest_event(events, pvc)
        if event is not None and event.get("reason") in _CLAIM_STUCK:
            return Derived(AgentStatus.FAILED, event["reason"],
                           f"PersistentVolumeClaim {pvc['metadata']['name']}: {event.get('message') or 'not bound'}")
    return None


def _from_pod(pod: Obj, pvc: Obj | None, events: Iterable[Obj] = ()) -> Derived:
    restarts = sum(int(c.get("restartCount") or 0) for c in _container_statuses(pod))
    if pod["metadata"].get("deletionTimestamp"):
        return Derived(AgentStatus.STOPPING, "Terminating", "the pod is shutting down", restarts)
    phase = (pod.get("status") or {}).get("phase", "Pending")
    conditions = _conditions(pod)
    fatal = _fatal_waiting(pod, restarts)
    if fatal is not None:
        return fatal

    if phase == "Failed":
        terminated = _terminated(pod, "state")
        reason = terminated.get("reason") or (pod.get("status") or {}).get("reason") or "Failed"
        return Derived(AgentStatus.FAILED, reason, _terminated_message(terminated) or
                       (pod.get("status") or {}).get("message") or "the pod failed", restarts)
    if phase == "Succeeded":
        return Derived(AgentStatus.STOPPED, "Completed", "the agent exited", restarts)

    scheduled = conditions.get("PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        message = scheduled.get("message") or ""
        if "unbound" in message and "PersistentVolumeClaim" in message:
            # The scheduler retries once the claim is bound: not a failure, unless the claim never will be.
            claim = _claim_problem(pvc, events)
            if claim is not None:
                return Derived(claim.status, claim.reason, claim.message, restarts)
            return Derived(AgentStatus.PENDING, "ClaimPending", message, restarts)
        if scheduled.get("reason") == "Unschedulable":
            return Derived(AgentStatus.FAILED, "Unschedulable", scheduled.get("message") or "no node fits the pod", restarts)
        return Derived(AgentStatus.PENDING, scheduled.get("reason") or "Scheduling", scheduled.get("message"), restarts)

    claim = _claim_problem(pvc, events)
    if claim is not None:
        return Derived(claim.status, claim.reason, claim.message, restarts)
    if conditions.get("Ready", {}).get("status") == "True":
        return Derived(AgentStatus.READY, restarts=restarts)
    if scheduled is None or scheduled.get("status") != "True":
        return Derived(AgentStatus.PENDING, "Scheduling", "waiting for the scheduler", restarts)
    last = _terminated(pod, "lastState")
    if last:
        return Derived(AgentStatus.STARTING, last.get("reason"), _terminated_message(last), restarts)
    if pvc is not None and (pvc.get("status") or {}).get("phase") != "Bound":
        return Derived(AgentStatus.STARTING, "ClaimPending", f"waiting for {pvc['metadata']['name']} to be bound", restarts)
    return Derived(AgentStatus.STARTING, "ContainersNotReady", "waiting for agentapi to answer /status", restarts)


def _fatal_waiting(pod: Obj, restarts: int) -> Derived | None:
    """FAILED when a container waits for a reason that does not pass by itself (crash loop, bad image, ...)."""
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _FATAL_WAITING:
            last = ((cs.get("lastState") or {}).get("terminated") or {})
            reason = waiting["reason"]
            # A container the kernel keeps killing at its memory limit crash-loops;
            # the limit is what to change, so that is the reason to show.
            if reason == "CrashLoopBackOff" and last.get("reason") == "OOMKilled":
                reason = "OOMKilled"
            parts = [m for m in (waiting.get("message"), _terminated_message(last)) if m]
            message = "; last exit: ".join(parts) or waiting["reason"]
            return Derived(AgentStatus.FAILED, reason, message, restarts)
    return None


def _terminated(pod: Obj, state: str) -> Obj:
    """The first container's ``terminated`` record in its ``state`` (or ``lastState``)."""
    for cs in _container_statuses(pod):
        terminated = (cs.get(state) or {}).get("terminated")
        if terminated:
            return terminated
    return {}


def _terminated_message(terminated: Obj) -> str | None:
    if not terminated:
        return None
    text = terminated.get("message") or ""
    code = terminated.get("exitCode")
    reason = terminated.get("reason") or "terminated"
    return f"{reason} (exit code {code}){': ' + text.strip() if text.strip() else ''}"
