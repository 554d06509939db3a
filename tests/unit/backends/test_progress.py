"""The start progress model: steps once each, in order, implied steps, and how a start ends."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, strategies as st

from agentproxy.backends.agent_state import AgentState, AgentStatus
from agentproxy.backends.progress import (
    BOUND,
    CLAIMED,
    FIRST_MESSAGE,
    K8S_PLAN,
    LOCAL_PLAN,
    RESTART,
    RESUME,
    START,
    Fact,
    Facts,
    ProgressBook,
    StartProgress,
    claim_plan,
)
from agentproxy.spec import AgentSpec, Resources

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def state(status: AgentStatus, reason: str | None = None, message: str | None = None, *,
          first_message: str | None = None, suspended: bool = False) -> AgentState:
    spec = AgentSpec(id="a1", session="s1", type="echo", command=("echo",),
                     resources=Resources("100m", "500m", "256Mi", "512Mi", "1Gi"), message=first_message)
    return AgentState(spec=spec, mode="k8s", status=status, created_at=T0, reason=reason, message=message,
                      suspended=suspended)


def names(record: StartProgress) -> list[str]:
    return [s.name for s in record.steps]


def test_steps_come_once_in_plan_order_with_implied_ones():
    record = StartProgress("a1", START, K8S_PLAN, T0, has_first_message=False)
    assert [s.name for s in record.observe({"applied": Fact(at(0))}, at(1))] == ["applied"]
    assert record.observe({"applied": Fact(at(0))}, at(2)) == []  # a fact seen again adds nothing
    # The container started: its node, volume and image are implied, at the time it started at the latest.
    added = record.observe({"applied": Fact(at(0)), "container_started": Fact(at(5), "started")}, at(6))
    assert [s.name for s in added] == ["scheduled", "volume_bound", "image_ready", "container_started"]
    assert [s.at for s in added] == [at(5)] * 4  # implied steps take the time of what implies them
    assert names(record) == ["applied", "scheduled", "volume_bound", "image_ready", "container_started"]
    assert record.steps[0].seconds == 0.0 and record.steps[-1].message == "started"


def test_steps_of_one_rank_come_in_the_order_they_were_reached():
    record = StartProgress("a1", START, K8S_PLAN, T0, has_first_message=False)
    record.observe({"applied": Fact(at(0)), "volume_bound": Fact(at(1))}, at(1))
    record.observe({"applied": Fact(at(0)), "volume_bound": Fact(at(1)), "scheduled": Fact(at(2))}, at(2))
    assert names(record) == ["applied", "volume_bound", "scheduled"]


def test_times_never_go_backwards_and_durations_add_up():
    record = StartProgress("a1", START, LOCAL_PLAN, at(10), has_first_message=False)
    record.observe({"process_started": Fact(at(9))}, at(11))  # an object's time before the start began
    record.observe({"agentapi_answering": Fact(None)}, at(12))
    record.finish("ready", "the agent is ready", now=at(13))
    times = [s.at for s in record.steps]
    assert times == sorted(times) and times[0] == at(10)
    assert abs(sum(s.seconds for s in record.steps) - 3.0) < 1e-9


@given(st.lists(st.sampled_from(K8S_PLAN.names()), max_size=20))
def test_any_order_of_facts_gives_each_step_once_in_rank_order(order):
    record = StartProgress("a1", START, K8S_PLAN, T0, has_first_message=True)
    facts: dict[str, Fact] = {}
    for n, name in enumerate(order):
        facts[name] = Fact(None)
        record.observe(dict(facts), at(n))
    got = names(record)
    assert len(got) == len(set(got))
    ranks = {name: rank for name, rank, _ in K8S_PLAN.steps}
    assert [ranks[n] for n in got] == sorted(ranks[n] for n in got)
    if order:
        top = max(ranks[n] for n in order)
        assert {n for n in K8S_PLAN.names() if ranks[n] < top} <= set(got)


def test_a_start_ends_ready_after_its_first_message():
    changes: list[str] = []
    book = ProgressBook(LOCAL_PLAN, changes.append)
    told: list[str] = []
    book.listeners.append(lambda record, step: told.append(step.name))
    book.begin(state(AgentStatus.PENDING, first_message="hi").spec, START, at(0))
    book.observe(state(AgentStatus.STARTING, first_message="hi"), {"process_started": Fact()}, now=at(1))
    ready = state(AgentStatus.READY, first_message="hi")
    book.observe(ready, {"process_started": Fact(), "agentapi_answering": Fact(), "restored": Fact()}, now=at(2))
    record = book.get("a1")
    assert record is not None and not record.ended  # the first message is still to come
    book.observe(ready, {"process_started": Fact(), "agentapi_answering": Fact(), "restored": Fact(),
                         FIRST_MESSAGE: Fact()}, now=at(3))
    assert names(record) == ["process_started", "agentapi_answering", "restored", FIRST_MESSAGE, "ready"]
    assert told == names(record) and changes and record.ended


def test_an_overdue_first_message_ends_ready_saying_so():
    book = ProgressBook(LOCAL_PLAN)
    book.begin(state(AgentStatus.PENDING, first_message="hi").spec, START, at(0))
    book.observe(state(AgentStatus.READY, "FirstMessagePending", "not delivered", first_message="hi"), {},
                 first_message_overdue=True, now=at(5))
    record = book.get("a1")
    assert record is not None and record.steps[-1].name == "ready"
    assert (record.steps[-1].reason, record.steps[-1].message) == ("FirstMessagePending", "not delivered")
    assert FIRST_MESSAGE not in names(record)


def test_a_failure_ends_the_start_with_the_agents_reason():
    book = ProgressBook(K8S_PLAN)
    book.begin(state(AgentStatus.PENDING).spec, START, at(0))
    book.observe(state(AgentStatus.FAILED, "ProvisioningFailed", "no such StorageClass"),
                 {"applied": Fact(at(0))}, now=at(1))
    record = book.get("a1")
    assert record is not None
    assert names(record) == ["applied", "failed"]
    assert (record.steps[-1].reason, record.steps[-1].message) == ("ProvisioningFailed", "no such StorageClass")
    # Nothing more once ended, not even a later ready.
    book.observe(state(AgentStatus.READY), {"container_started": Fact()}, now=at(2))
    assert names(record) == ["applied", "failed"]


def test_starts_seen_without_a_begin_resumes_and_restarts():
    book = ProgressBook(LOCAL_PLAN)
    timed: list[str] = []
    book.listeners.append(lambda record, step: timed.append(f"{record.kind} {step.name}"))
    book.observe(state(AgentStatus.STARTING), {"process_started": Fact()}, now=at(1))
    first = book.get("a1")
    assert first is not None and first.kind == START and first.begun == T0  # created by another proxy
    book.observe(state(AgentStatus.READY), {"process_started": Fact(), "agentapi_answering": Fact()}, now=at(2))
    assert first.ended
    book.observe(state(AgentStatus.STARTING, "Exited"), {}, now=at(3))  # crashed: a restart
    restart = book.get("a1")
    assert restart is not first and restart is not None and restart.kind == RESTART
    book.observe(state(AgentStatus.STOPPING, "Suspending", suspended=True), {}, now=at(4))
    assert restart.steps[-1].name == "stopped" and restart.steps[-1].reason == "Suspending"
    book.observe(state(AgentStatus.SUSPENDED, "Suspended", suspended=True), {}, now=at(5))
    book.observe(state(AgentStatus.STARTING), {"process_started": Fact()}, now=at(6))
    resumed = book.get("a1")
    assert resumed is not None and resumed.kind == RESUME and names(resumed) == ["process_started"]
    # Only the restart is timed here: the start and the resume were another proxy's.
    assert timed == ["restart stopped"]
    # Facts are asked for only while a start is under way.
    book.observe(state(AgentStatus.READY), lambda: {"process_started": Fact()}, now=at(7))
    assert resumed.ended
    book.observe(state(AgentStatus.READY), _facts_never_asked, now=at(8))


def test_a_ready_agent_restarts_only_when_its_run_ended():
    book = ProgressBook(K8S_PLAN)
    run = {"applied": Fact(at(0)), "scheduled": Fact(at(1)), "container_started": Fact(at(2))}
    book.begin(state(AgentStatus.PENDING).spec, START, at(0))
    book.observe(state(AgentStatus.READY), {**run, "agentapi_answering": Fact(at(3))}, now=at(3))
    first = book.get("a1")
    assert first is not None and first.ended
    book.observe(state(AgentStatus.STARTING, "ContainersNotReady"), run, now=at(4))  # Ready lost, runs on
    assert book.get("a1") is first
    book.observe(state(AgentStatus.READY), _facts_never_asked, now=at(5))
    again = {**run, "container_started": Fact(at(6))}  # started again
    book.observe(state(AgentStatus.STARTING, "ContainersNotReady"), again, now=at(6))
    restart = book.get("a1")
    assert restart is not first and restart is not None and restart.kind == RESTART
    book.observe(state(AgentStatus.READY), {**again, "agentapi_answering": Fact(at(7))}, now=at(7))
    # Failed meanwhile: whatever starts next is a new run, even with the same facts.
    book.observe(state(AgentStatus.FAILED, "ClaimLost"), _facts_never_asked, now=at(8))
    book.observe(state(AgentStatus.STARTING), again, now=at(9))
    assert book.get("a1") is not restart and book.get("a1").kind == RESTART


def test_stopping_ends_no_start_a_suspend_and_a_stop_do():
    book = ProgressBook(K8S_PLAN)
    record = book.begin(state(AgentStatus.PENDING).spec, START, at(0))
    book.observe(state(AgentStatus.STOPPING, "Terminating"), {"scheduled": Fact(at(1))}, now=at(1))
    assert not record.ended  # a pod seen before its StatefulSet reads as this
    book.observe(state(AgentStatus.STOPPING, "Suspending", suspended=True), {}, now=at(2))
    assert record.steps[-1].name == "stopped" and record.steps[-1].reason == "Suspending"
    other = book.begin(state(AgentStatus.PENDING).spec, START, at(3))
    book.observe(state(AgentStatus.STOPPED, "ScaledDown"), {}, now=at(4))
    assert other.steps[-1].name == "stopped"


def _facts_never_asked() -> Facts:
    raise AssertionError("facts were asked for while no start was under way")


def test_an_agent_first_seen_ready_shows_what_its_facts_still_tell():
    book = ProgressBook(K8S_PLAN)
    book.observe(state(AgentStatus.READY), {"applied": Fact(at(0)), "agentapi_answering": Fact(at(4))}, now=at(9))
    record = book.get("a1")
    assert record is not None and names(record)[0] == "applied" and names(record)[-1] == "ready"
    assert "container_started" in names(record)


def test_a_deleted_agent_ends_stopped_and_is_forgotten():
    book = ProgressBook(K8S_PLAN)
    record = book.begin(state(AgentStatus.PENDING).spec, START, at(0))
    book.gone("a1", now=at(1))
    assert names(record) == ["stopped"] and book.get("a1") is None


def test_steps_as_json():
    record = StartProgress("a1", START, K8S_PLAN, T0, has_first_message=False)
    record.observe({"applied": Fact(at(0.5))}, at(1))
    record.finish("failed", "boom", "CrashLoopBackOff", at(2))
    data = record.to_json()
    assert data["steps"][0] == {"step": "applied", "at": "2026-01-01T12:00:00.500Z",
                                "message": "the agent's objects are applied", "seconds": 0.5}
    assert data["steps"][1]["reason"] == "CrashLoopBackOff" and data["ended"] is True
    assert dataclasses.asdict(record.steps[1])["seconds"] == 1.5


def test_a_resume_is_not_ended_by_the_suspended_state_seen_before_its_own():
    book = ProgressBook(K8S_PLAN)
    suspended = state(AgentStatus.SUSPENDED, "Suspended", suspended=True)
    book.observe(suspended, {"applied": Fact(at(0))}, now=at(0))
    record = book.begin(suspended.spec, RESUME, at(1))
    book.observe(suspended, {"applied": Fact(at(0))}, now=at(2))  # a watch event before the resume's own
    assert names(record) == ["applied"] and not record.ended
    book.observe(state(AgentStatus.PENDING), {"applied": Fact(at(0))}, now=at(3))
    book.observe(state(AgentStatus.STOPPING, "Suspending", suspended=True), {}, now=at(4))
    assert names(record) == ["applied", "stopped"]
    book.end("a1", "failed", "too late")  # an ended start stays as it ended
    assert names(record) == ["applied", "stopped"]


def test_k8s_steps_from_the_objects_the_watch_holds():
    from agentproxy.backends.k8s.model import AgentObjects
    from agentproxy.backends.k8s.steps import start_facts

    sts = {"metadata": {"name": "agent-a1", "creationTimestamp": "2026-01-01T12:00:00Z"}}
    pvc = {"metadata": {"name": "data-agent-a1-0"}, "spec": {"volumeName": "pv-1"}, "status": {"phase": "Pending"}}
    pod: dict[str, Any] = {"metadata": {"name": "agent-a1-0"}, "spec": {"nodeName": "node-1"},
           "status": {"conditions": [{"type": "PodScheduled", "status": "True",
                                      "lastTransitionTime": "2026-01-01T12:00:02Z"}],
                      "containerStatuses": [{"name": "agent", "image": "img:1", "imageID": "",
                                             "state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert list(start_facts(AgentObjects(None, sts, None, pvc))) == ["applied"]
    facts = start_facts(AgentObjects(None, sts, pod, pvc))
    assert list(facts) == ["applied", "scheduled"] and facts["scheduled"].at == at(2)
    assert facts["scheduled"].message == "pod agent-a1-0 is placed on node node-1"
    bound = {**pvc, "status": {"phase": "Bound"}}
    pod["status"]["containerStatuses"][0].update(imageID="sha256:1", state={"running": {
        "startedAt": "2026-01-01T12:00:05Z"}})
    pod["status"]["conditions"].append({"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T12:00:07Z"})
    facts = start_facts(AgentObjects(None, sts, pod, bound), first_message_delivered=True)
    assert set(facts) == {"applied", "volume_bound", "scheduled", "image_ready", "container_started",
                          "agentapi_answering", FIRST_MESSAGE}
    assert facts["container_started"].at == at(5) and facts["agentapi_answering"].at == at(7)
    assert "pv-1" in (facts["volume_bound"].message or "")
    # A pod being deleted shows nothing.
    leaving = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T12:01:00Z"}}
    assert set(start_facts(AgentObjects(None, sts, leaving, bound))) == {"applied", "volume_bound"}
    # Fed to a record, they come in rank order with the objects' own times.
    record = StartProgress("a1", START, K8S_PLAN, T0, has_first_message=True)
    record.observe(start_facts(AgentObjects(None, sts, pod, bound), first_message_delivered=True), at(9))
    assert names(record) == K8S_PLAN.names()
    assert [s.at for s in record.steps][:6] == [at(0), at(2), at(5), at(5), at(5), at(7)]


async def test_a_backend_follows_starts_only_once_it_sees_everything():
    from tests.unit.api.memory_backend import MemoryBackend

    backend = MemoryBackend()
    backend.progress_paused = True
    backend.agents["a1"] = state(AgentStatus.STOPPING, "Terminating")  # a pod listed before its StatefulSet
    backend.publish(backend.agents["a1"])
    assert backend.progress.get("a1") is None
    backend.agents["a1"] = state(AgentStatus.READY)
    backend.publish(backend.agents["a1"])
    backend.follow_progress()
    record = backend.progress.get("a1")
    assert record is not None and names(record) == ["ready"]


def test_a_start_dropped_tells_no_step_and_another_replicas_start_is_seen_as_such():
    """A pool member another replica claimed first: this proxy's start of it never was."""
    book = ProgressBook(K8S_PLAN)
    told: list[str] = []
    book.listeners.append(lambda record, step: told.append(step.name))
    book.begin(state(AgentStatus.PENDING).spec, START, at(0))
    book.drop("a1")
    assert book.get("a1") is None and told == []
    book.observe(state(AgentStatus.READY), {"applied": Fact(at(0))}, now=at(1))
    record = book.get("a1")
    assert record is not None and not record.timed and names(record)[-1] == "ready"


def test_a_claim_from_a_warm_pool_has_steps_of_its_own():
    """The member's start happened before the create: its steps are not the agent's."""
    assert claim_plan(K8S_PLAN).names() == [CLAIMED, BOUND, "agentapi_answering", FIRST_MESSAGE]
    assert claim_plan(LOCAL_PLAN).names() == [CLAIMED, BOUND, "agentapi_answering", "restored", FIRST_MESSAGE]
    book = ProgressBook(K8S_PLAN)
    warm = book.begin(state(AgentStatus.PENDING).spec, START, at(0), warm=True)
    member_facts = {"applied": Fact(at(-300)), "scheduled": Fact(at(-299)), "container_started": Fact(at(-290))}
    book.observe(state(AgentStatus.STARTING), {**member_facts, CLAIMED: Fact(at(0.1), "member m1 is claimed")},
                 now=at(0.2))
    assert names(warm) == [CLAIMED] and warm.steps[0].message == "member m1 is claimed"
    book.observe(state(AgentStatus.STARTING), {**member_facts, CLAIMED: Fact(at(0.1)), BOUND: Fact(at(0.3))},
                 now=at(0.4))
    # The pod was Ready before the claim (kwok marks it so): the step is not before the claim.
    book.observe(state(AgentStatus.READY), {**member_facts, CLAIMED: Fact(at(0.1)), BOUND: Fact(at(0.3)),
                                            "agentapi_answering": Fact(at(-280))}, now=at(1))
    assert names(warm) == [CLAIMED, BOUND, "agentapi_answering", "ready"]
    assert [s.at for s in warm.steps][:3] == [at(0.1), at(0.3), at(0.3)]
    # A replica that only sees the agent: a first start of an agent made from a pool is a claim.
    other = ProgressBook(K8S_PLAN)
    spec = dataclasses.replace(state(AgentStatus.STARTING).spec, pool="echo")
    seen = dataclasses.replace(state(AgentStatus.STARTING), spec=spec)
    other.observe(seen, {**member_facts, CLAIMED: Fact(None, "a member of pool 'echo' is claimed")}, now=at(2))
    record = other.get("a1")
    assert record is not None and names(record) == [CLAIMED] and not record.timed
    # Its restart after a crash is an ordinary start again.
    assert other.begin(spec, RESTART, at(3)).plan is K8S_PLAN
