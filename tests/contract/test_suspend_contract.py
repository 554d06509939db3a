"""Suspend and resume, the same for every backend: a suspended agent keeps its data and runs
nothing; suspending it again or resuming a running agent changes nothing; a resume, or a
create with the same spec, brings it back; suspension survives a restart of the proxy;
delete works in every state; each suspend and resume is told once to the listeners."""

from __future__ import annotations

import asyncio

import pytest

from agentproxy.backends.base import AgentStatus, Conflict, LifecycleEvent, NotFound, StatusEvent
from agentproxy.backends.suspension import API, IDLE, SUSPENDED_REASON

from .harness import Harness, negated


def _listen(subject: Harness) -> list[LifecycleEvent]:
    told: list[LifecycleEvent] = []
    subject.backend.lifecycle_listeners.append(told.append)
    return told


async def test_suspend_keeps_the_data_and_resume_brings_the_agent_back(subject: Harness):
    backend = subject.backend
    told = _listen(subject)
    await backend.create(subject.spec("a1", message="hello"))
    ready = await subject.ready("a1")
    assert not ready.suspended and await subject.running("a1")

    first = await backend.suspend("s1", "a1")
    assert first.suspended and first.status in (AgentStatus.STOPPING, AgentStatus.SUSPENDED)
    assert first.upstream is None
    suspended = await subject.status("a1", AgentStatus.SUSPENDED)
    assert (suspended.reason, suspended.suspended, suspended.upstream) == (SUSPENDED_REASON, True, None)
    assert "suspended through the API" in (suspended.message or "")
    assert (suspended.spec, suspended.created_at) == (ready.spec, ready.created_at)
    await subject.until("nothing of the agent to run", lambda: negated(subject.running("a1")))
    assert await subject.data_kept("a1")
    assert [s.id for s in await backend.list(status=AgentStatus.SUSPENDED)] == ["a1"]

    again = await backend.suspend("s1", "a1", cause=IDLE)  # a no-op
    assert again.status is AgentStatus.SUSPENDED and again.suspended

    resumed = await backend.resume("s1", "a1")
    assert not resumed.suspended and resumed.status in (AgentStatus.PENDING, AgentStatus.STARTING,
                                                         AgentStatus.READY)
    back = await subject.ready("a1")
    assert back.upstream and (back.spec, back.created_at) == (ready.spec, ready.created_at)
    assert await subject.data_kept("a1") and await subject.running("a1")
    still = await backend.resume("s1", "a1")  # a no-op
    assert still.status is AgentStatus.READY and not still.suspended

    await subject.until("the resume to be timed", lambda: _has(told, "ready"))
    assert [(e.kind, e.cause) for e in told] == [("suspended", API), ("resumed", API), ("ready", API)]
    assert told[-1].seconds is not None and told[-1].seconds >= 0


async def test_a_suspended_agent_stays_suspended_across_a_restart(subject: Harness):
    await subject.backend.create(subject.spec("a1"))
    await subject.ready("a1")
    await subject.backend.suspend("s1", "a1")
    await subject.status("a1", AgentStatus.SUSPENDED)

    await subject.restart()
    state = await subject.status("a1", AgentStatus.SUSPENDED)
    assert state.suspended and state.reason == SUSPENDED_REASON
    await asyncio.sleep(1.0)  # whatever the restarted backend repairs, it does not start the agent
    assert (await subject.backend.get("s1", "a1")).status is AgentStatus.SUSPENDED
    assert not await subject.running("a1")

    await subject.backend.resume("s1", "a1")
    assert (await subject.ready("a1")).upstream


async def test_a_create_with_the_same_spec_resumes_a_suspended_agent(subject: Harness):
    backend = subject.backend
    told = _listen(subject)
    spec = subject.spec("a1", env={"LEVEL": "3"})
    await backend.create(spec)
    first = await subject.ready("a1")
    await backend.suspend("s1", "a1")
    await subject.status("a1", AgentStatus.SUSPENDED)

    with pytest.raises(Conflict):
        await backend.create(subject.spec("a1", env={"LEVEL": "4"}))
    assert (await backend.get("s1", "a1")).status is AgentStatus.SUSPENDED  # the conflict changed nothing

    again = await backend.create(spec)
    assert again.id == "a1" and not again.suspended
    back = await subject.ready("a1")
    assert (back.spec, back.created_at) == (first.spec, first.created_at)
    assert [(e.kind, e.cause) for e in told][:2] == [("suspended", API), ("resumed", API)]


async def test_delete_works_in_every_state_of_suspension(subject: Harness):
    backend = subject.backend
    for agent_id in ("k1", "p1"):
        await backend.create(subject.spec(agent_id))
    for agent_id in ("k1", "p1"):
        await subject.ready(agent_id)
        await backend.suspend("s1", agent_id)
    await subject.status("k1", AgentStatus.SUSPENDED)
    deleted = await backend.delete("s1", "k1")
    assert deleted.id == "k1" and deleted.status in (AgentStatus.STOPPING, AgentStatus.STOPPED)
    await backend.delete("s1", "p1", purge=True)  # maybe still being suspended
    for agent_id in ("k1", "p1"):
        await subject.gone(agent_id)
    assert await subject.data_kept("k1")
    await subject.until("the purged data to be deleted", lambda: negated(subject.data_kept("p1")))
    await backend.create(subject.spec("k1"))  # the id is free again
    assert not (await subject.ready("k1")).suspended


async def test_suspend_and_resume_are_announced_and_scoped_to_the_session(subject: Harness):
    backend = subject.backend
    events: list[StatusEvent] = []

    async def collect() -> None:
        async for event in backend.events():
            if event.agent.id == "e1":
                events.append(event)

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    try:
        await backend.create(subject.spec("e1"))
        await subject.ready("e1")
        for call in (backend.suspend("s2", "e1"), backend.resume("s2", "e1"),
                     backend.suspend("s1", "nobody"), backend.resume("s1", "nobody")):
            with pytest.raises(NotFound):
                await call
        assert (await backend.get("s1", "e1")).status is AgentStatus.READY  # nothing above touched it
        await backend.suspend("s1", "e1")
        await subject.status("e1", AgentStatus.SUSPENDED)
        await backend.resume("s1", "e1")
        await subject.ready("e1")
        await asyncio.sleep(0.2)
    finally:
        collector.cancel()
    statuses = [e.agent.status for e in events]
    suspended_at = statuses.index(AgentStatus.SUSPENDED)
    assert AgentStatus.READY in statuses[:suspended_at] and statuses[-1] is AgentStatus.READY
    assert all(e.type == "modified" for e in events[1:])


async def test_a_guard_that_no_longer_holds_leaves_the_agent_running(subject: Harness):
    backend = subject.backend
    told = _listen(subject)
    await backend.create(subject.spec("g1"))
    await subject.ready("g1")
    kept = await backend.suspend("s1", "g1", cause=IDLE, guard=lambda state: False)
    assert kept.status is AgentStatus.READY and not kept.suspended and told == []
    await backend.suspend("s1", "g1", cause=IDLE, guard=lambda state: state.status is AgentStatus.READY)
    await subject.status("g1", AgentStatus.SUSPENDED)
    assert [(e.kind, e.cause) for e in told] == [("suspended", IDLE)]


async def _has(told: list[LifecycleEvent], kind: str) -> bool:
    return any(e.kind == kind for e in told)
