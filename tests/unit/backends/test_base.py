"""The pieces of the shared backend rules by themselves: the spec check, per-agent locks, the
event hub and the waiters of an agent's next change. (The rules as a whole run against every backend in ``tests/contract``.)"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from agentproxy.backends.base import AgentLocks, Conflict, check_same_spec
from agentproxy.backends.events import EventHub
from agentproxy.backends.lifecycle import ChangeWaiters

from .._support import spec_for


def test_equal_specs_are_a_repeat_and_others_a_conflict_naming_the_id(settings):
    check_same_spec(spec_for(settings), spec_for(settings))
    with pytest.raises(Conflict, match="already exists with a different spec") as info:
        check_same_spec(spec_for(settings), spec_for(settings, env={"X": "1"}))
    assert info.value.field == "id"
    with pytest.raises(Conflict, match="already used in another session"):
        check_same_spec(spec_for(settings), spec_for(settings, session="s2"))


async def test_agent_locks_serialise_one_agent_and_are_dropped_when_free():
    locks = AgentLocks()
    order: list[str] = []

    async def hold(agent_id: str, name: str, delay: float) -> None:
        async with locks.hold(agent_id):
            order.append(f"{name} in")
            await asyncio.sleep(delay)
            order.append(f"{name} out")

    first = asyncio.create_task(hold("a1", "first", 0.05))
    await asyncio.sleep(0)
    assert locks.held("a1") and not locks.held("b1")
    await asyncio.gather(first, hold("a1", "second", 0), hold("b1", "other", 0))
    assert order.index("first out") < order.index("second in")
    assert order.index("other in") < order.index("first out")  # another agent does not wait
    assert not locks.held("a1") and locks._entries == {}


async def test_a_wait_for_the_next_change_returns_at_once_when_the_caller_missed_one():
    # A progress stream looks at an agent's steps, then waits in a task of its own: a step
    # reached before that task first runs must still wake it (it used to wait for the heartbeat).
    waiters = ChangeWaiters()
    steps = ["process_started"]
    seen = len(steps)
    wait = asyncio.ensure_future(waiters.next_change("a1", 30.0, unless=lambda: len(steps) > seen))
    steps.append("ready")  # before the wait task ran: no waiter to tell yet
    waiters.changed("a1")
    assert await asyncio.wait_for(wait, 5.0) is True
    # Nothing missed: it waits for the next change, or for its timeout.
    assert await waiters.next_change("a1", 0.01, unless=lambda: False) is False
    woken = asyncio.ensure_future(waiters.next_change("a1", 30.0, unless=lambda: False))
    await asyncio.sleep(0)
    waiters.changed("a1")
    assert await asyncio.wait_for(woken, 5.0) is True
    # A wait cancelled before it ran leaves nothing registered.
    never = asyncio.ensure_future(waiters.next_change("b1", 30.0))
    never.cancel()
    await asyncio.gather(never, return_exceptions=True)
    assert not waiters._waiters


async def test_the_hub_ends_its_subscriptions_when_closed():
    hub: EventHub[int] = EventHub(max_queue=2)
    seen: list[int] = []

    async def read() -> None:
        async for event in hub.subscribe():
            seen.append(event)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    assert hub.subscribers == 1
    for event in (1, 2, 3):
        hub.publish(event)  # the slow reader loses the oldest
    hub.close()
    await asyncio.wait_for(reader, 5)
    assert seen == [3] and hub.subscribers == 0


def test_a_repeat_of_a_warm_agents_create_is_a_repeat(settings):
    """A warm agent's spec names the pool it was claimed from; the create repeated names none."""
    warm = dataclasses.replace(spec_for(settings), pool="echo")
    check_same_spec(warm, spec_for(settings))
    with pytest.raises(Conflict):
        check_same_spec(warm, spec_for(settings, env={"X": "1"}))
