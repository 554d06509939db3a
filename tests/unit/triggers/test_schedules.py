"""Schedules on a fake clock: a simulated day with two replicas sharing one claim store (a real
file and a real ``flock``), missed ticks, a replica dying mid-tick, and the overlap policy."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.suspension import AgentActivity
from agentproxy.settings.schema import TriggersSettings
from agentproxy.triggers.config import Schedule
from agentproxy.triggers.scheduler import ClaimStore, Scheduler
from agentproxy.triggers.schedules import decide
from agentproxy.triggers.service import TRIGGERS, schedule_agent_id

from ..api.memory_backend import MemoryBackend
from .support import DAY, Clock, assert_each_tick_fired_once, expected, schedules


async def test_two_replicas_over_a_simulated_day_fire_each_tick_once(tmp_path: Path) -> None:
    fired: Counter[tuple[str, datetime]] = Counter()
    by: Counter[str] = Counter()

    def firing(name: str) -> Any:
        async def fire(schedule: Schedule, tick: datetime) -> str:
            fired[(schedule.id, tick)] += 1
            by[name] += 1
            return "created"
        return fire

    clock = Clock(DAY)
    store = ClaimStore(tmp_path / "triggers")
    replicas = [Scheduler(schedules(), store, firing(name), name, clock=clock) for name in ("r1", "r2")]
    rng = random.Random(7)
    end = DAY + timedelta(days=1)
    # Each replica wakes as its loop does (at the next tick), a little late by a random amount:
    # either one may look first, and both look at every tick.
    wakes = {replica: DAY + timedelta(seconds=rng.uniform(0, 20)) for replica in replicas}
    while min(wakes.values()) < end:
        replica = min(wakes, key=lambda r: wakes[r])
        clock.now = wakes[replica]
        await replica.run_due()
        wakes[replica] = replica.next_wake() + timedelta(seconds=rng.uniform(0, 20))
    for schedule in schedules().values():
        assert_each_tick_fired_once(schedule, fired, DAY, end - timedelta(seconds=30))
    assert by["r1"] and by["r2"]  # both replicas did some of the work
    # 02:30 does not exist in Berlin on the 29th: croniter's answer is the one both replicas kept to.
    # The 22:00 tick was the schedules' first look (not theirs to run): 95 quarters follow in the day.
    assert len(expected(schedules()["quarter"], DAY, end - timedelta(seconds=30))) == 95


async def test_a_replica_that_dies_mid_tick_does_not_lose_the_run(tmp_path: Path) -> None:
    fired: list[tuple[str, str, datetime]] = []

    async def dies(schedule: Schedule, tick: datetime) -> str:
        raise ConnectionError("the replica's process ended here")

    async def fires(schedule: Schedule, tick: datetime) -> str:
        fired.append(("r2", schedule.id, tick))
        return "created"

    clock = Clock(datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC))
    store = ClaimStore(tmp_path)
    only = {"quarter": schedules()["quarter"]}
    first, second = Scheduler(only, store, dies, "r1", clock=clock), Scheduler(only, store, fires, "r2", clock=clock)
    # The first look notes where the schedule is; the 12:15 tick is r1's, which dies in it.
    assert await first.run_due() == []
    clock.now += timedelta(minutes=15)
    assert await first.run_due() == []
    clock.now += timedelta(seconds=5)
    assert await second.run_due() == []  # r1's claim is fresh: not taken over yet
    clock.now += timedelta(seconds=61)
    assert await second.run_due() == [("quarter", datetime(2026, 5, 1, 12, 15, tzinfo=UTC), "created")]
    clock.now += timedelta(seconds=5)
    assert await second.run_due() == [] and len(fired) == 1


@pytest.mark.parametrize(("policy", "runs"), [("skip", 0), ("run_once", 1)])
def test_missed_ticks_while_down(policy: str, runs: int) -> None:
    last = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    back = datetime(2026, 5, 3, 10, 17, tzinfo=UTC)  # two days and seven hours later
    decision = decide("0 3 * * *", "UTC", policy, last, back)
    assert decision is not None and decision.missed == 2 and decision.last == datetime(2026, 5, 3, 3, 0, tzinfo=UTC)
    assert (decision.tick is not None) == bool(runs)
    # On time (within the grace) a tick runs whatever the policy, and nothing was missed.
    on_time = decide("0 3 * * *", "UTC", policy, last, datetime(2026, 5, 2, 3, 0, 20, tzinfo=UTC))
    assert on_time is not None and on_time.tick is not None and on_time.missed == 0
    assert decide("0 3 * * *", "UTC", policy, on_time.last, datetime(2026, 5, 2, 3, 0, 40, tzinfo=UTC)) is None


@pytest.mark.parametrize("overlap", ["skip", "replace"])
async def test_overlap_policy_with_a_previous_run_still_working(settings, tmp_path, overlap) -> None:
    settings.local_mode.data_dir = str(tmp_path / "data")
    settings.triggers = TriggersSettings(schedules={"nightly": {"cron": "0 3 * * *", "prompt": "run {{ tick }}",
                                                                "overlap": overlap, "owner": "alice"}})
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        await _overlap(client, backend, overlap)
    finally:
        await client.close()


async def _overlap(client: TestClient, backend: MemoryBackend, overlap: str) -> None:
    service = client.app[TRIGGERS]
    schedule = service.triggers.schedules["nightly"]
    monday, tuesday = datetime(2026, 5, 4, 3, 0, tzinfo=UTC), datetime(2026, 5, 5, 3, 0, tzinfo=UTC)
    assert await service.fire(schedule, monday) == "created nightly-202605040300"
    first = backend.agents["nightly-202605040300"]
    assert first.spec.message == "run 2026-05-04T03:00:00+00:00" and first.spec.owner == "alice"
    backend.activities[first.id] = AgentActivity("running")
    result = await service.fire(schedule, tuesday)
    if overlap == "skip":
        assert result == "skipped: nightly-202605040300 is still working"
        assert list(backend.agents) == ["nightly-202605040300"]
    else:
        assert result == "created nightly-202605050300, replaced nightly-202605040300"
        assert list(backend.agents) == ["nightly-202605050300"]
    # A previous run that finished its work is no overlap.
    backend.activities.clear()
    assert (await service.fire(schedule, tuesday + timedelta(days=1))).startswith("created")
    # The same tick again (another replica, a retry) finds the agent it made: no second one.
    before = len(backend.agents)
    await service.fire(schedule, tuesday + timedelta(days=1))
    assert len(backend.agents) == before
    assert schedule_agent_id(schedule, monday) == "nightly-202605040300"
    assert backend.agents[schedule_agent_id(schedule, tuesday + timedelta(days=1))].status is AgentStatus.READY
