"""What every backend promises (:class:`agentproxy.backends.base.Backend`), tested the same way
against each of them: create, idempotency and conflicts; get, list, filters and order;
delete and purge; status events; errors."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from agentproxy.backends.base import AgentStatus, Conflict, NotFound, StatusEvent, visible

from .harness import Harness, negated


async def test_create_then_get_and_ready(subject: Harness):
    backend = subject.backend
    spec = subject.spec("a1", message="hello")
    created = await backend.create(spec)
    assert (created.id, created.session, created.spec, created.mode) == ("a1", "s1", spec, backend.mode)
    assert created.status in (AgentStatus.PENDING, AgentStatus.STARTING, AgentStatus.READY)
    # Visible once created (in Kubernetes as soon as the watch has seen it), ready a little later.
    ready = await subject.ready("a1")
    assert ready.upstream and ready.upstream.startswith("http://")
    got = await backend.get("s1", "a1")
    assert (got.id, got.spec, got.mode, got.created_at) == ("a1", spec, backend.mode, ready.created_at)
    assert got.created_at.tzinfo is not None


async def test_an_equal_create_is_a_repeat(subject: Harness):
    backend = subject.backend
    await backend.create(subject.spec("a1", env={"LEVEL": "3"}))
    first = await subject.ready("a1")
    again = await backend.create(subject.spec("a1", env={"LEVEL": "3"}))
    assert (again.id, again.spec, again.created_at) == ("a1", first.spec, first.created_at)
    assert again.status is AgentStatus.READY
    assert [s.id for s in await backend.list()] == ["a1"]


async def test_a_different_spec_or_session_is_a_conflict_and_changes_nothing(subject: Harness):
    backend = subject.backend
    spec = subject.spec("a1")
    await backend.create(spec)
    before = await subject.ready("a1")
    with pytest.raises(Conflict) as different:
        await backend.create(subject.spec("a1", env={"X": "1"}))
    assert (different.value.http_status, different.value.field) == (409, "id")
    assert "already exists with a different spec" in different.value.message
    with pytest.raises(Conflict) as elsewhere:
        await backend.create(subject.spec("a1", session="s2"))
    assert "already used in another session" in elsewhere.value.message and elsewhere.value.field == "id"
    after = await backend.get("s1", "a1")
    assert (after.spec, after.created_at, after.status) == (spec, before.created_at, AgentStatus.READY)
    assert [s.id for s in await backend.list()] == ["a1"]
    with pytest.raises(NotFound):
        await backend.get("s2", "a1")


async def test_agents_belong_to_their_session(subject: Harness):
    backend = subject.backend
    await backend.create(subject.spec("a1"))
    await subject.ready("a1")
    for call in (backend.get("s2", "a1"), backend.logs("s2", "a1"), backend.delete("s2", "a1")):
        with pytest.raises(NotFound) as info:
            await call
        assert info.value.http_status == 404 and "'a1'" in info.value.message and "'s2'" in info.value.message
    assert (await backend.get("s1", "a1")).id == "a1"  # the delete in s2 touched nothing


async def test_list_filters_and_order(subject: Harness):
    backend = subject.backend
    made = [("c1", "s1"), ("a1", "s2"), ("b1", "s1")]
    for agent_id, session in made:
        await backend.create(subject.spec(agent_id, session=session))
    states = [await subject.ready(agent_id, session) for agent_id, session in made]
    # Creation time orders them (ties, within the clock's resolution, by id).
    assert [s.created_at for s in states] == sorted(s.created_at for s in states)
    everything = await backend.list()
    assert [s.id for s in everything] == [s.id for s in sorted(states, key=lambda s: (s.created_at, s.id))]
    assert {s.id for s in await backend.list(session="s1")} == {"c1", "b1"}
    assert [s.id for s in await backend.list(session="s2")] == ["a1"]
    assert [s.id for s in await backend.list(session="s3")] == []
    assert [s.id for s in await backend.list(status=AgentStatus.READY)] == [s.id for s in everything]
    assert await backend.list(status=AgentStatus.FAILED) == []
    assert [s.id for s in await backend.list(session="s1", status=AgentStatus.READY)] == \
        [s.id for s in everything if s.session == "s1"]


async def test_delete_keeps_the_data_and_purge_removes_it(subject: Harness):
    backend = subject.backend
    for agent_id in ("k1", "p1"):
        await backend.create(subject.spec(agent_id))
    for agent_id in ("k1", "p1"):
        await subject.ready(agent_id)
        assert await subject.data_kept(agent_id)
    kept = await backend.delete("s1", "k1")
    assert (kept.id, kept.session) == ("k1", "s1") and kept.status in (AgentStatus.STOPPING, AgentStatus.STOPPED)
    purged = await backend.delete("s1", "p1", purge=True)
    assert purged.id == "p1" and purged.status in (AgentStatus.STOPPING, AgentStatus.STOPPED)
    for agent_id in ("k1", "p1"):
        await subject.gone(agent_id)
    assert await subject.data_kept("k1")
    await subject.until("the purged data to be deleted", lambda: negated(subject.data_kept("p1")))
    with pytest.raises(NotFound):
        await backend.delete("s1", "k1")
    assert await backend.list() == []
    # The id is free again, and the kept data is the new agent's.
    await backend.create(subject.spec("k1", session="s2"))
    assert (await subject.ready("k1", "s2")).session == "s2" and await subject.data_kept("k1")


async def test_events_tell_an_agent_life_once_per_visible_change(subject: Harness):
    backend = subject.backend
    events: list[StatusEvent] = []

    async def collect() -> None:
        async for event in backend.events():
            if event.agent.id == "e1":
                events.append(event)
                if event.type == "deleted":
                    return

    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)  # subscribed before the first change
    try:
        await backend.create(subject.spec("e1"))
        await subject.ready("e1")
        await backend.delete("s1", "e1")
        await asyncio.wait_for(collector, 60)
    finally:
        collector.cancel()
    kinds = [e.type for e in events]
    assert kinds[0] == "added" and kinds[-1] == "deleted" and set(kinds[1:-1]) <= {"modified"}
    assert AgentStatus.READY in {e.agent.status for e in events}
    changes = [visible(e.agent) for e in events[:-1]]
    assert all(a != b for a, b in itertools.pairwise(changes)), [(e.type, visible(e.agent)) for e in events]
    assert all(e.agent.spec == events[0].agent.spec for e in events)


async def test_unknown_agents_are_not_found(subject: Harness):
    backend = subject.backend
    for call in (backend.get("s1", "nobody"), backend.delete("s1", "nobody"), backend.logs("s1", "nobody")):
        with pytest.raises(NotFound) as info:
            await call
        assert (info.value.http_status, info.value.code) == (404, "not_found")
    assert await backend.list() == []
