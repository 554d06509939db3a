"""What only Events tell about an agent: a pod the StatefulSet controller could not create,
a claim that cannot be provisioned or bound. Events of an earlier object of the same name,
and older Events, do not count."""

from __future__ import annotations

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.cache import event_agent
from agentproxy.backends.k8s.status import derive_status, latest_event

STS = {"kind": "StatefulSet", "metadata": {"name": "agent-a", "uid": "sts-1"}, "spec": {"replicas": 1}}
PENDING = {"kind": "PersistentVolumeClaim", "metadata": {"name": "data-agent-a-0", "uid": "pvc-1"},
           "status": {"phase": "Pending"}}
UNSCHEDULED = {"metadata": {"name": "agent-a-0"}, "spec": {}, "status": {"phase": "Pending", "conditions": [
    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
     "message": "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."}]}}


def event(kind, name, uid, reason, message, when="2026-01-01T00:00:05Z"):
    return {"metadata": {"name": f"{name}.{reason}"}, "involvedObject": {"kind": kind, "name": name, "uid": uid},
            "reason": reason, "message": message, "lastTimestamp": when}


def test_a_pod_the_controller_could_not_create_fails_with_its_message():
    quota = ('create Pod agent-a-0 in StatefulSet agent-a failed error: pods "agent-a-0" is forbidden: '
             'exceeded quota: q, requested: requests.cpu=100m, used: requests.cpu=0, limited: requests.cpu=10m')
    events = [event("StatefulSet", "agent-a", "sts-1", "FailedCreate", quota)]
    derived = derive_status(STS, None, None, events)
    assert (derived.status, derived.reason, derived.message) == (AgentStatus.FAILED, "FailedCreate", quota)
    # An event of an earlier StatefulSet of that name, or a later success, is no failure.
    assert derive_status(STS, None, None, [event("StatefulSet", "agent-a", "old", "FailedCreate", quota)]).status \
        is AgentStatus.PENDING
    created = event("StatefulSet", "agent-a", "sts-1", "SuccessfulCreate", "create Pod", "2026-01-01T00:00:09Z")
    assert derive_status(STS, None, None, [*events, created]).reason == "PodNotCreated"


def test_a_claim_the_controller_found_made_already_is_no_failure():
    # The controller's cache of claims was behind the claim applied before the StatefulSet: it
    # tries to make the claim from its template, is told it exists, and creates the pod next time.
    exists = ('create Pod agent-a-0 in StatefulSet agent-a failed error: failed to create PVC data-agent-a-0: '
              'persistentvolumeclaims "data-agent-a-0" already exists')
    derived = derive_status(STS, None, None, [event("StatefulSet", "agent-a", "sts-1", "FailedCreate", exists)])
    assert (derived.status, derived.reason) == (AgentStatus.PENDING, "PodNotCreated")


def test_a_claim_that_will_not_be_bound_fails_with_the_binders_message():
    missing = [event("PersistentVolumeClaim", "data-agent-a-0", "pvc-1", "ProvisioningFailed",
                     'storageclass.storage.k8s.io "gold" not found')]
    derived = derive_status(STS, UNSCHEDULED, PENDING, missing)
    assert (derived.status, derived.reason) == (AgentStatus.FAILED, "ProvisioningFailed")
    assert derived.message == 'PersistentVolumeClaim data-agent-a-0: storageclass.storage.k8s.io "gold" not found'
    none = [event("PersistentVolumeClaim", "data-agent-a-0", "pvc-1", "FailedBinding",
                  "no persistent volumes available for this claim and no storage class is set")]
    assert derive_status(STS, None, PENDING, none).reason == "FailedBinding"
    # Without such an event the claim is only waiting.
    assert derive_status(STS, UNSCHEDULED, PENDING).reason == "ClaimPending"
    bound = {**PENDING, "status": {"phase": "Bound"}}
    assert derive_status(STS, None, bound, none).reason == "PodNotCreated"


def test_events_name_their_agent_and_the_latest_counts():
    assert event_agent(event("StatefulSet", "agent-a-b", "u", "X", "")) == "a-b"
    assert event_agent(event("PersistentVolumeClaim", "data-agent-a-0", "u", "X", "")) == "a"
    assert event_agent(event("Pod", "agent-a-0", "u", "X", "")) is None
    old = event("PersistentVolumeClaim", "data-agent-a-0", "pvc-1", "A", "", "2026-01-01T00:00:01Z")
    new = event("PersistentVolumeClaim", "data-agent-a-0", "pvc-1", "B", "", "2026-01-01T00:00:02Z")
    latest = latest_event([new, old], PENDING)
    assert latest is not None and latest["reason"] == "B" and latest_event([], PENDING) is None
