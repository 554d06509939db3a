"""Status derivation of the k8s backend (a pure function of StatefulSet, Pod and
PVC) and the drift check its reconciler uses."""

from __future__ import annotations

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.model import with_owner
from agentproxy.backends.k8s.status import derive_status

STS = {"metadata": {"name": "agent-a"}, "spec": {"replicas": 1}}
BOUND = {"metadata": {"name": "data-agent-a-0"}, "status": {"phase": "Bound"}}


def pod(phase="Pending", conditions=(), statuses=(), deleting=False):
    meta = {"name": "agent-a-0"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {}, "status": {
        "phase": phase, "conditions": [{"type": t, "status": s, **extra} for t, s, extra in conditions],
        "containerStatuses": list(statuses)}}


def test_nothing_at_all_is_stopped_and_a_terminating_pod_is_stopping():
    assert derive_status(None, None, None).status is AgentStatus.STOPPED
    assert derive_status(None, pod(), None).status is AgentStatus.STOPPING


def test_deleting_statefulset_is_stopping_and_zero_replicas_is_stopped():
    deleting = {"metadata": {"name": "agent-a", "deletionTimestamp": "x"}, "spec": {"replicas": 1}}
    assert derive_status(deleting, pod(), BOUND).status is AgentStatus.STOPPING
    scaled = {"metadata": {"name": "agent-a"}, "spec": {"replicas": 0}}
    assert derive_status(scaled, None, BOUND).status is AgentStatus.STOPPED


def test_no_pod_yet_is_pending():
    derived = derive_status(STS, None, None)
    assert (derived.status, derived.reason) == (AgentStatus.PENDING, "PodNotCreated")


def test_unschedulable_is_failed_with_the_schedulers_message():
    p = pod(conditions=[("PodScheduled", "False", {"reason": "Unschedulable", "message": "0/1 nodes: Insufficient cpu"})])
    derived = derive_status(STS, p, BOUND)
    assert (derived.status, derived.reason, derived.message) == (
        AgentStatus.FAILED, "Unschedulable", "0/1 nodes: Insufficient cpu")


def test_waiting_for_an_unbound_claim_is_pending_not_failed():
    p = pod(conditions=[("PodScheduled", "False", {
        "reason": "Unschedulable", "message": "pod has unbound immediate PersistentVolumeClaims"})])
    derived = derive_status(STS, p, {"metadata": {"name": "data-agent-a-0"}, "status": {"phase": "Pending"}})
    assert (derived.status, derived.reason) == (AgentStatus.PENDING, "ClaimPending")


def test_image_pull_and_crash_loop_are_failures_with_reason_and_message():
    pull = pod(conditions=[("PodScheduled", "True", {})], statuses=[{
        "name": "agentapi", "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}])
    derived = derive_status(STS, pull, BOUND)
    assert (derived.status, derived.reason) == (AgentStatus.FAILED, "ImagePullBackOff")
    assert "Back-off pulling" in (derived.message or "")

    crash = pod(phase="Running", conditions=[("PodScheduled", "True", {})], statuses=[{
        "name": "agentapi", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "message": "boom"}}}])
    derived = derive_status(STS, crash, BOUND)
    assert (derived.status, derived.reason, derived.restarts) == (AgentStatus.FAILED, "CrashLoopBackOff", 4)
    assert "exit code 1" in (derived.message or "") and "boom" in (derived.message or "")


def test_a_crash_loop_names_its_last_exit_and_an_oom_kill_is_the_reason():
    # What a kubelet reports for a container killed at its memory limit, between restarts.
    backoff = "back-off 40s restarting failed container=agentapi pod=agent-a-0_ns(0e1f)"
    oom = pod(phase="Running", conditions=[("PodScheduled", "True", {})], statuses=[{
        "name": "agentapi", "restartCount": 3,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": backoff}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 1}}}])
    derived = derive_status(STS, oom, BOUND)
    assert (derived.status, derived.reason, derived.restarts) == (AgentStatus.FAILED, "OOMKilled", 3)
    assert derived.message == f"{backoff}; last exit: OOMKilled (exit code 1)"

    crash = pod(phase="Running", conditions=[("PodScheduled", "True", {})], statuses=[{
        "name": "agentapi", "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": backoff}},
        "lastState": {"terminated": {"reason": "Error", "exitCode": 3}}}])
    derived = derive_status(STS, crash, BOUND)
    assert (derived.status, derived.reason) == (AgentStatus.FAILED, "CrashLoopBackOff")
    assert (derived.message or "").endswith("last exit: Error (exit code 3)")


def test_running_but_not_ready_is_starting_and_ready_is_ready():
    starting = pod(phase="Running", conditions=[("PodScheduled", "True", {}), ("Ready", "False", {})])
    assert derive_status(STS, starting, BOUND).status is AgentStatus.STARTING
    ready = pod(phase="Running", conditions=[("PodScheduled", "True", {}), ("Ready", "True", {})])
    assert derive_status(STS, ready, BOUND).status is AgentStatus.READY


def test_a_previous_oom_kill_is_reported_while_restarting():
    p = pod(phase="Running", conditions=[("PodScheduled", "True", {}), ("Ready", "False", {})], statuses=[{
        "name": "agentapi", "restartCount": 1, "state": {"running": {}},
        "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}])
    derived = derive_status(STS, p, BOUND)
    assert (derived.status, derived.reason, derived.restarts) == (AgentStatus.STARTING, "OOMKilled", 1)


def test_failed_pod_and_lost_claim():
    failed = pod(phase="Failed", statuses=[{"name": "agentapi", "state": {"terminated": {"reason": "Error", "exitCode": 2}}}])
    assert derive_status(STS, failed, BOUND).status is AgentStatus.FAILED
    lost = {"metadata": {"name": "data-agent-a-0"}, "status": {"phase": "Lost"}}
    assert derive_status(STS, None, lost).reason == "ClaimLost"


def test_a_lost_claim_fails_a_running_agent_only_while_it_is_lost():
    running = pod(phase="Running", conditions=[("PodScheduled", "True", {}), ("Ready", "True", {})],
                  statuses=[{"name": "agentapi", "state": {"running": {}}}])
    lost = {"metadata": {"name": "data-agent-a-0"}, "status": {"phase": "Lost"}}
    derived = derive_status(STS, running, lost)
    assert (derived.status, derived.reason) == (AgentStatus.FAILED, "ClaimLost")
    assert "data-agent-a-0" in (derived.message or "")
    # The PV controller binds the claim again once its volume exists: nothing else is needed.
    assert derive_status(STS, running, BOUND).status is AgentStatus.READY


def test_with_owner_copies_and_does_not_touch_the_original():
    obj = {"metadata": {"name": "x"}}
    owned = with_owner(obj, {"kind": "StatefulSet", "name": "agent-a", "uid": "u"})
    assert owned["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert "ownerReferences" not in obj["metadata"]
