"""Whether the API server answers, without a cluster: the time of its last answer on an
injected clock, what /readyz is told, who is woken when it answers again, calls refused at
once while it is silent, and the limits on creates."""

from __future__ import annotations

import asyncio

import pytest

from agentproxy.backends.base import TooMany, Unavailable
from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.health import ApiHealth
from agentproxy.backends.limits import CreateLimits, CreateQueue

from .._support import settings_with, spec_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_server_answers_while_its_last_answer_is_recent():
    clock = Clock()
    health = ApiHealth(unready_after=5.0, clock=clock)
    assert not health.started and not health.answering()
    assert health.reason() == "the Kubernetes API server has not answered yet"
    health.answered()
    clock.now += 5.0
    assert health.answering() and health.reason() is None
    clock.now += 0.5
    health.failed("the Kubernetes API server did not answer list configmaps within 5 s")
    assert not health.answering()
    assert health.reason() == ("the Kubernetes API server has not answered for 6 s (the Kubernetes API server "
                               "did not answer list configmaps within 5 s)")


def test_listeners_run_when_it_answers_after_a_silence_or_a_failed_call():
    clock = Clock()
    health = ApiHealth(unready_after=5.0, clock=clock)
    woken = []
    health.on_recovery(lambda: woken.append(clock.now))
    health.answered()
    health.answered()
    assert woken == []  # nothing was wrong
    health.failed("connection refused")
    clock.now += 1
    health.answered()  # a restart quicker than unready_after
    clock.now += 60
    health.answered()  # after a silence
    assert woken == [101.0, 161.0] and health.recoveries == 1


async def test_calls_fail_at_once_while_the_server_is_silent():
    clock = Clock()
    health = ApiHealth(unready_after=5.0, clock=clock)
    client = Client(api=None, health=health, retry_after=7.0)  # type: ignore[arg-type]  # no API server: health only
    client.require_answering()  # never answered yet: a first list must be allowed to try
    health.answered()
    clock.now += 6
    # Nothing asked for 6 s (this process was busy, or idle): no silence of the server's, the call is tried.
    client.require_answering()
    health.failed("the check timed out")  # asked, and no answer
    clock.now += 1
    with pytest.raises(Unavailable) as error:
        await client.request("GET", "/api/v1/namespaces/ns/configmaps")
    assert error.value.retry_after == 7.0 and "has not answered for 7 s" in error.value.message
    assert client.calls == 0  # refused before anything was sent


def test_agents_per_session_and_owner():
    settings = settings_with()
    limits = CreateLimits(per_session=2, per_owner=3)
    mine = [spec_for(settings, f"a{i}", session="s1", owner="alice") for i in range(2)]
    with pytest.raises(TooMany, match="session 's1' is full: it holds the 2 agents"):
        limits.check_room(spec_for(settings, "a9", session="s1"), mine)
    limits.check_room(spec_for(settings, "a1", session="s1"), mine)  # the same id: a repeat, not one more
    limits.check_room(spec_for(settings, "b1", session="s2", owner="alice"), mine)
    more = [*mine, spec_for(settings, "c1", session="s3", owner="alice")]
    with pytest.raises(TooMany, match="'alice' already owns 3 agents"):
        limits.check_room(spec_for(settings, "d1", session="s4", owner="alice"), more)
    limits.check_room(spec_for(settings, "d1", session="s4", owner=None), more)  # no owner without keys
    CreateLimits().check_room(spec_for(settings, "x"), more)  # no limits by default


async def test_creates_wait_for_their_turn_and_beyond_the_queue_are_refused():
    queue = CreateQueue(CreateLimits(concurrent=2, queued=1))
    release = asyncio.Event()
    inside = []

    async def create(name: str) -> None:
        async with queue.slot():
            inside.append(name)
            await release.wait()
    tasks = [asyncio.create_task(create(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0.01)
    assert inside == ["a", "b"] and queue.waiting == 1
    with pytest.raises(TooMany) as error:
        async with queue.slot():
            pass
    assert error.value.retry_after == 1.0
    release.set()
    await asyncio.gather(*tasks)
    assert inside == ["a", "b", "c"] and queue.waiting == 0
