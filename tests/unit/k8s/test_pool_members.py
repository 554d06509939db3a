"""Warm pool members in k8s mode, the pure part: which objects are a member, its state from
its pod, the claim's conditional merge patch, and the member's token."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from agentproxy.backends.k8s import poolmembers
from agentproxy.backends.k8s.model import AgentObjects
from agentproxy.launcher import BOUND_VARIABLE
from agentproxy.pools import FAILED, LABEL_POOL, LABEL_SHAPE, POOL_SESSION, READY, WARMING, Member, refill_plan
from agentproxy.render import BINDING_PORT, render_agent

from .._support import by_kind, spec_for
from .support import stored

MADE = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SOON = MADE + timedelta(seconds=5)


def member_objects(settings, pod=None):
    spec = dataclasses.replace(spec_for(settings, agent_id="m1", session=POOL_SESSION), pool="echo")
    objects = by_kind(render_agent(settings, spec))
    claim = stored({**objects["ConfigMap"], "metadata": {**objects["ConfigMap"]["metadata"], "resourceVersion": "41"}})
    return AgentObjects(claim, stored(objects["StatefulSet"]), pod, None)


def pod(**status):
    return {"metadata": {"name": "agent-m1-0"}, "status": {"phase": "Running", **status}}


def container(**fields):
    return {"name": "agentapi", "restartCount": 0, "state": {"running": {}}, **fields}


def test_a_member_is_found_by_the_labels_of_its_claim(settings):
    objects = member_objects(settings)
    assert poolmembers.is_member(objects)
    assert poolmembers.pool_of(objects.claim) == "echo"
    view = poolmembers.member_view("m1", objects, SOON, 60)
    assert view == Member("m1", "echo", objects.claim["metadata"]["labels"][LABEL_SHAPE], WARMING)
    # Claimed: its ConfigMap lost the pool's labels (its StatefulSet may keep them a moment).
    claimed_claim = {**objects.claim, "metadata": {**objects.claim["metadata"], "labels": {"a": "b"}}}
    claimed = dataclasses.replace(objects, claim=claimed_claim)
    assert not poolmembers.is_member(claimed) and poolmembers.member_view("m1", claimed, SOON, 60) is None
    # Its ConfigMap gone (deleted out of band, or half-removed): still a member, by its StatefulSet.
    assert poolmembers.is_member(dataclasses.replace(objects, claim=None))


def test_a_member_being_deleted_is_none_any_more(settings):
    objects = member_objects(settings)
    going = {**objects.statefulset, "metadata": {**objects.statefulset["metadata"], "deletionTimestamp": "x"}}
    assert poolmembers.member_view("m1", dataclasses.replace(objects, statefulset=going), SOON, 60) is None


@pytest.mark.parametrize("the_pod, state", [
    (None, WARMING),
    (pod(), WARMING),  # no IP, no container yet
    (pod(podIP="10.0.0.9", containerStatuses=[container(started=False)]), WARMING),
    # Started: its startup probe passes while the launcher waits for its binding.
    (pod(podIP="10.0.0.9", containerStatuses=[container(started=True)]), READY),
    (pod(containerStatuses=[container(started=True)]), WARMING),  # no address to bind it at yet
    # Ready (kwok marks pods Ready without running a probe; a Ready container has started).
    (pod(podIP="10.0.0.9", conditions=[{"type": "Ready", "status": "True"}]), READY),
    (pod(podIP="10.0.0.9", containerStatuses=[container(started=True, restartCount=1)]), FAILED),
    (pod(podIP="10.0.0.9", containerStatuses=[container(state={"terminated": {"exitCode": 1}})]), FAILED),
    (pod(containerStatuses=[container(state={"waiting": {"reason": "ImagePullBackOff"}})]), FAILED),
    (pod(containerStatuses=[container(state={"waiting": {"reason": "ContainerCreating"}})]), WARMING),
    ({**pod(), "status": {"phase": "Failed"}}, FAILED),
])
def test_the_state_of_a_member(settings, the_pod, state):
    assert poolmembers.member_state(member_objects(settings, the_pod), SOON, 60) == state


def test_a_member_that_does_not_come_up_in_time_is_failed(settings):
    objects = member_objects(settings, pod(podIP="10.0.0.9"))
    assert poolmembers.member_state(objects, MADE + timedelta(seconds=59), 60) == WARMING
    assert poolmembers.member_state(objects, MADE + timedelta(seconds=61), 60) == FAILED
    ready = member_objects(settings, pod(podIP="10.0.0.9", containerStatuses=[container(started=True)]))
    assert poolmembers.member_state(ready, MADE + timedelta(hours=5), 60) == READY  # it may wait for ever


def test_a_member_half_made_by_a_crash_is_failed_once_its_configmap_stays_missing(settings):
    """A StatefulSet whose ConfigMap never came (or went): no claim can take it, so it is
    replaced; a moment without it is the watches of two kinds seen out of order."""
    started = pod(podIP="10.0.0.9", containerStatuses=[container(started=True)])
    orphan = dataclasses.replace(member_objects(settings, started), claim=None)
    grace = poolmembers.ORPHAN_GRACE
    assert poolmembers.member_state(orphan, MADE + timedelta(seconds=grace - 1), 300) == WARMING
    assert poolmembers.member_state(orphan, MADE + timedelta(seconds=grace + 1), 300) == FAILED
    view = poolmembers.member_view("m1", orphan, MADE + timedelta(seconds=grace + 1), 300)
    assert view is not None and refill_plan(1, view.shape, [view]).remove == ("m1",)


def test_an_unanswered_claim_is_told_apart_by_its_mark(settings):
    objects = member_objects(settings)
    owner = spec_for(settings, agent_id="m1", session="s1", owner="ann")
    rendered = by_kind(render_agent(settings, dataclasses.replace(owner, pool="echo")))["ConfigMap"]
    patch = poolmembers.claim_patch(objects.claim, rendered, "mark-1")
    assert patch["metadata"]["annotations"][poolmembers.CLAIM_ANNOTATION] == "mark-1"
    applied = {**objects.claim, "metadata": {**objects.claim["metadata"],
                                            "annotations": patch["metadata"]["annotations"]}}
    assert poolmembers.claim_outcome(applied, "mark-1") == poolmembers.OURS
    assert poolmembers.claim_outcome(applied, "mark-2") == poolmembers.NOT_OURS  # another create's claim
    assert poolmembers.claim_outcome(objects.claim, "mark-1") == poolmembers.NOT_OURS  # not applied
    assert poolmembers.claim_outcome(None, "mark-1") == poolmembers.NOT_OURS  # removed
    going = {**applied, "metadata": {**applied["metadata"], "deletionTimestamp": "x"}}
    assert poolmembers.claim_outcome(going, "mark-1") == poolmembers.NOT_OURS


def test_the_claim_is_conditional_on_the_version_read_and_makes_the_agent_its_owners(settings):
    objects = member_objects(settings)
    owner = spec_for(settings, agent_id="m1", session="s1", env={"GREETING": "hi"}, message="hello", owner="ann")
    rendered = by_kind(render_agent(settings, dataclasses.replace(owner, pool="echo")))["ConfigMap"]
    patch = poolmembers.claim_patch(objects.claim, rendered)
    assert patch["metadata"]["resourceVersion"] == "41"
    labels = patch["metadata"]["labels"]
    assert labels[LABEL_POOL] is None and labels[LABEL_SHAPE] is None  # null removes a key (merge patch)
    assert labels["agentproxy.io/session"] == "s1"
    assert patch["metadata"]["annotations"] == rendered["metadata"]["annotations"]
    assert patch["data"]["GREETING"] == "hi" and patch["data"]["AGENTAPI_INITIAL_PROMPT"] == "hello"
    assert patch["data"][BOUND_VARIABLE] == "1" and patch["data"]["AGENTPROXY_SESSION"] == "s1"
    # Applied as a merge patch, it gives exactly the owner's labels and data.
    merged_labels = {k: v for k, v in {**objects.claim["metadata"]["labels"], **labels}.items() if v is not None}
    assert merged_labels == rendered["metadata"]["labels"]
    stale = {**objects.claim, "data": {**objects.claim["data"], "OLD": "x"}}
    assert poolmembers.claim_patch(stale, rendered)["data"]["OLD"] is None


def test_the_token_lives_in_a_secret_owned_by_the_members_configmap(settings):
    configmap = member_objects(settings).claim
    secret = poolmembers.binding_secret("ns1", "m1", "t0ken", configmap)
    assert secret["metadata"]["name"] == "agent-m1-binding" and secret["kind"] == "Secret"
    assert secret["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "ConfigMap",
                                                      "name": "agent-m1-config", "uid": "uid-1"}]
    assert base64.b64decode(secret["data"]["token"]) == b"t0ken"
    assert poolmembers.token_of(secret) == "t0ken"
    assert poolmembers.token_of(None) is None and poolmembers.token_of({"data": {"token": "%%%"}}) is None


def test_where_a_member_is_bound():
    assert poolmembers.binding_url(pod(podIP="10.0.0.9"), "/bind") == f"http://10.0.0.9:{BINDING_PORT}/bind"
    assert poolmembers.binding_url(pod(podIP="fd00::9"), "/bind") == f"http://[fd00::9]:{BINDING_PORT}/bind"
    assert poolmembers.binding_url(pod(), "/bind") is None and poolmembers.binding_url(None, "/bind") is None


def test_refill_decisions_with_members_of_the_cluster():
    """What every replica decides from the same view: the same members go (so two replicas that
    both made members remove the same extra ones), and as many are made as are missing."""
    members = [Member(f"m{i}", "echo", "s1", READY) for i in range(7)] + [Member("w1", "echo", "s1", WARMING),
                                                                          Member("old", "echo", "s0", READY)]
    plan = refill_plan(5, "s1", members)
    assert plan.make == 0 and set(plan.remove) == {"old", "w1", "m5", "m6"}
    assert refill_plan(5, "s1", list(reversed(members))) == plan
    assert refill_plan(5, "s1", members[:3]).make == 2
    assert refill_plan(0, "", members).remove == tuple(m.id for m in members)  # a removed pool drains
