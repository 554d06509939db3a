"""The schedules' claims in k8s mode: one Lease per schedule, written by conditional writes, on a
fake clock. Two replicas over a simulated day (often looking in the same instant, so that their
writes race), a replica dying after its claim, missed ticks after a stop of every replica, the
pure steps and both encodings of an entry.

The Leases live in :class:`~.support.LeaseServer`, which keeps only the API server's rule of
conditional writes (see its docstring for why); the e2e suite runs the same store against a real
API server."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.k8s.leases import ScheduleLeases
from agentproxy.backends.suspension import AgentActivity
from agentproxy.settings.schema import TriggersSettings
from agentproxy.triggers.claims import (
    DONE,
    LAST,
    MISSED,
    TICK,
    Claim,
    Entry,
    claim_tick,
    entry_from_json,
    entry_from_lease,
    entry_to_json,
    finish,
    lease_for,
    lease_name,
    renew,
    stale,
)
from agentproxy.triggers.config import Schedule
from agentproxy.triggers.scheduler import ClaimStore, Scheduler, Store
from agentproxy.triggers.service import TRIGGERS

from ..api.memory_backend import MemoryBackend
from .support import DAY, Clock, LeaseServer, assert_each_tick_fired_once, schedules

NAMESPACE = "agents"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/agents/leases"


def leases(server: LeaseServer) -> ScheduleLeases:
    """One replica's store (each replica its own, as each has its own client)."""
    return ScheduleLeases(server, NAMESPACE, "agentproxy")


async def test_two_replicas_over_a_simulated_day_fire_each_tick_once_through_leases() -> None:
    fired: Counter[tuple[str, datetime]] = Counter()
    server = LeaseServer()
    clock = Clock(DAY)

    def firing(name: str) -> Any:
        async def fire(schedule: Schedule, tick: datetime) -> str:
            fired[(schedule.id, tick)] += 1
            await asyncio.sleep(0)  # the other replica may look meanwhile: it must see the open claim
            return "created"
        return fire

    replicas = [Scheduler(schedules(), leases(server), firing(name), name, clock=clock) for name in ("r1", "r2")]
    rng = random.Random(11)
    end = DAY + timedelta(days=1)

    def late() -> timedelta:
        # Half the looks are in the very instant of the tick, by both replicas at once: their
        # writes race, and the API server's 409 settles it.
        return timedelta(0) if rng.random() < 0.5 else timedelta(seconds=rng.uniform(0, 20))

    wakes = {replica: DAY + late() for replica in replicas}
    while min(wakes.values()) < end:
        clock.now = min(wakes.values())
        now_due = [replica for replica in replicas if wakes[replica] == clock.now]
        await asyncio.gather(*(replica.run_due() for replica in now_due))
        for replica in now_due:
            wakes[replica] = replica.next_wake() + late()
    total = 0
    for schedule in schedules().values():
        ticks = assert_each_tick_fired_once(schedule, fired, DAY, end - timedelta(seconds=30))
        # Each run is counted once, by the replica that fired it.
        counted = sum(r.recent.counts[("schedule", schedule.id, "created")] for r in replicas)
        assert counted == len(ticks), schedule.id
        total += len(ticks)
        lease = server.objects[f"{LEASES}/{lease_name(schedule.id)}"]
        assert lease["spec"]["holderIdentity"] in ("r1", "r2")
        assert lease["metadata"]["annotations"][TICK] == ticks[-1].isoformat()
        assert lease["metadata"]["annotations"][DONE] == "true"
    assert all(r.recent.counts[("schedule", "quarter", "created")] for r in replicas)  # both did some work
    assert server.conflicts > 0  # the replicas did race, and the conditional writes settled it
    assert total == 95 + 1 + 1


async def test_a_replica_that_dies_after_its_claim_does_not_lose_the_run() -> None:
    fired: list[tuple[str, datetime]] = []

    async def dies(schedule: Schedule, tick: datetime) -> str:
        raise ConnectionError("the replica's process ended here")

    async def fires(schedule: Schedule, tick: datetime) -> str:
        fired.append((schedule.id, tick))
        return "created"

    server = LeaseServer()
    clock = Clock(datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC))
    only = {"quarter": schedules()["quarter"]}
    first = Scheduler(only, leases(server), dies, "r1", clock=clock)
    second = Scheduler(only, leases(server), fires, "r2", clock=clock)
    # The first look notes where the schedule is; the 12:15 tick is r1's, which dies in it.
    assert await first.run_due() == []
    clock.now = datetime(2026, 5, 1, 12, 15, tzinfo=UTC)
    assert await first.run_due() == []
    lease = server.objects[f"{LEASES}/agentproxy-schedule-quarter"]
    assert lease["spec"]["holderIdentity"] == "r1" and lease["metadata"]["annotations"][DONE] == "false"
    clock.now += timedelta(seconds=5)
    assert await second.run_due() == []  # r1's claim is fresh: not taken over yet
    # r2 looks again when r1's claim becomes stale, not only at the next tick.
    assert second.next_wake() == datetime(2026, 5, 1, 12, 16, tzinfo=UTC)
    clock.now = second.next_wake() + timedelta(milliseconds=10)
    tick = datetime(2026, 5, 1, 12, 15, tzinfo=UTC)
    assert await second.run_due() == [("quarter", tick, "created")]
    lease = server.objects[f"{LEASES}/agentproxy-schedule-quarter"]
    assert lease["spec"]["holderIdentity"] == "r2" and lease["spec"]["leaseTransitions"] == 1
    assert lease["metadata"]["annotations"][DONE] == "true"
    assert lease["metadata"]["annotations"][TICK] == tick.isoformat()
    clock.now += timedelta(seconds=5)
    assert await second.run_due() == [] and fired == [("quarter", tick)]
    assert second.recent.counts[("schedule", "quarter", "created")] == 1


async def test_a_tick_due_while_a_claim_was_open_runs_right_after_the_takeover() -> None:
    fired: list[datetime] = []

    async def dies(schedule: Schedule, tick: datetime) -> str:
        raise ConnectionError("the replica's process ended here")

    async def fires(schedule: Schedule, tick: datetime) -> str:
        fired.append(tick)
        return "created"

    server = LeaseServer()
    minutely = {"minute": schedules(minute={"cron": "* * * * *", "prompt": "m"})["minute"]}
    clock = Clock(datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC))
    first = Scheduler(minutely, leases(server), dies, "r1", clock=clock)
    second = Scheduler(minutely, leases(server), fires, "r2", clock=clock)
    await first.run_due()
    clock.now = datetime(2026, 5, 1, 12, 1, 10, tzinfo=UTC)  # r1, ten seconds late, claims 12:01 and dies
    await first.run_due()
    # r2 wakes as its loop does: at 12:01:15, at the 12:02 tick (r1's claim still fresh), when the
    # claim is stale (12:02:10: it fires 12:01), and at once again (12:02, on time, ten seconds late).
    clock.now = datetime(2026, 5, 1, 12, 1, 15, tzinfo=UTC)
    for _ in range(4):
        await second.run_due()
        clock.now = max(clock.now, second.next_wake()) + timedelta(milliseconds=10)
    assert fired == [datetime(2026, 5, 1, 12, 1, tzinfo=UTC), datetime(2026, 5, 1, 12, 2, tzinfo=UTC)]
    assert (await second.store.read("minute")).missed == 0


async def test_a_run_that_takes_long_keeps_its_claim_while_its_replica_lives() -> None:
    fired: list[str] = []
    release = asyncio.Event()

    async def slow(schedule: Schedule, tick: datetime) -> str:
        fired.append("r1")
        await asyncio.wait_for(release.wait(), 30)
        return "created"

    async def fires(schedule: Schedule, tick: datetime) -> str:
        fired.append("r2")
        return "created"

    server = LeaseServer()
    only = {"quarter": schedules()["quarter"]}
    clock = Clock(datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC))
    # r1 renews every 10 ms of real time (the fake clock says how old its claim is).
    first = Scheduler(only, leases(server), slow, "r1", clock=clock, renew_every=0.01)
    second = Scheduler(only, leases(server), fires, "r2", clock=clock)
    await first.run_due()
    clock.now = datetime(2026, 5, 1, 12, 15, 1, tzinfo=UTC)
    running = asyncio.create_task(first.run_due())
    for _ in range(500):
        if fired:
            break
        await asyncio.sleep(0.01)
    assert fired == ["r1"]  # r1 claimed 12:15 and makes its run
    path = f"{LEASES}/agentproxy-schedule-quarter"
    for minutes in (1, 2, 3):  # three minutes of a run: r1's claim is renewed, never stale
        clock.now = datetime(2026, 5, 1, 12, 15 + minutes, 1, tzinfo=UTC)
        for _ in range(500):
            await asyncio.sleep(0.01)
            if server.objects[path]["spec"].get("renewTime") == f"2026-05-01T12:{15 + minutes}:01.000000Z":
                break
        assert await second.run_due() == []
    lease = server.objects[path]
    assert lease["spec"]["acquireTime"] == "2026-05-01T12:15:01.000000Z"  # when it was claimed, kept
    release.set()
    assert [r[2] for r in await running] == ["created"]
    assert fired == ["r1"] and server.objects[path]["metadata"]["annotations"][DONE] == "true"


def store_of(kind: str, tmp_path: Path, server: LeaseServer) -> Store:
    return ClaimStore(tmp_path) if kind == "file" else leases(server)


@pytest.mark.parametrize("kind", ["file", "lease"])
@pytest.mark.parametrize(("policy", "runs"), [("skip", 0), ("run_once", 1)])
async def test_missed_ticks_after_every_replica_was_down(kind: str, policy: str, runs: int, tmp_path: Path) -> None:
    daily = schedules(daily={"cron": "0 3 * * *", "prompt": "d", "missed": policy})
    only = {"daily": daily["daily"]}
    fired: list[datetime] = []

    async def fire(schedule: Schedule, tick: datetime) -> str:
        fired.append(tick)
        return "created"

    server = LeaseServer()
    clock = Clock(datetime(2026, 5, 1, 2, 0, tzinfo=UTC))
    replicas = [Scheduler(only, store_of(kind, tmp_path, server), fire, name, clock=clock) for name in ("r1", "r2")]
    await replicas[0].run_due()  # the first look: from now on
    clock.now = datetime(2026, 5, 1, 3, 0, 5, tzinfo=UTC)
    await replicas[1].run_due()
    assert fired == [datetime(2026, 5, 1, 3, 0, tzinfo=UTC)]
    # Every replica down for two days and seven hours: the 2nd and 3rd, 03:00, were missed.
    clock.now = datetime(2026, 5, 3, 10, 17, tzinfo=UTC)
    await asyncio.gather(*(r.run_due() for r in replicas))
    assert fired[1:] == [datetime(2026, 5, 3, 3, 0, tzinfo=UTC)] * runs
    entry = await replicas[0].store.read("daily")
    assert entry.missed == 2 and entry.last == datetime(2026, 5, 3, 3, 0, tzinfo=UTC)
    if kind == "lease":
        annotations = server.objects[f"{LEASES}/agentproxy-schedule-daily"]["metadata"]["annotations"]
        assert annotations[MISSED] == "2" and annotations[LAST] == "2026-05-03T03:00:00+00:00"


def test_the_pure_steps_of_a_claim() -> None:
    schedule = schedules()["quarter"]
    now = datetime(2026, 5, 1, 12, 15, 2, tzinfo=UTC)
    tick = datetime(2026, 5, 1, 12, 15, tzinfo=UTC)
    seen = Entry(last=datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    entry, fires = claim_tick(schedule, seen, now, "r1")
    assert fires == tick and entry == Entry(tick, 0, Claim(tick, "r1", now))
    # Another replica a moment later: the claim is open and fresh, nothing to do, nothing to write.
    assert claim_tick(schedule, entry, now + timedelta(seconds=3), "r2") == (entry, None)
    # The same replica after its run failed fires it again at once.
    again, fires = claim_tick(schedule, entry, now + timedelta(seconds=3), "r1")
    assert fires == tick and again.claim == Claim(tick, "r1", now + timedelta(seconds=3))
    # Stale after 60 s: taken over.
    assert entry.claim is not None
    assert not stale(entry.claim, now + timedelta(seconds=59.9)) and stale(entry.claim, now + timedelta(seconds=60))
    taken, fires = claim_tick(schedule, entry, now + timedelta(seconds=60), "r2")
    assert fires == tick and taken.claim == Claim(tick, "r2", now + timedelta(seconds=60))
    # Done: of the tick claimed only; once done, no takeover and the next tick is decided as usual.
    assert finish(entry, tick + timedelta(minutes=15)) == entry
    done = finish(taken, tick)
    assert done.claim is not None and done.claim.done and not stale(done.claim, now + timedelta(hours=1))
    assert claim_tick(schedule, done, now + timedelta(minutes=5), "r1") == (done, None)
    later, fires = claim_tick(schedule, done, tick + timedelta(minutes=15, seconds=1), "r1")
    assert fires == tick + timedelta(minutes=15) and later.claim is not None and later.claim.by == "r1"
    # A renewal moves the claim's time, only of the replica's own open claim of that tick.
    assert renew(entry, tick, "r1", now + timedelta(seconds=30)).claim == Claim(tick, "r1", now + timedelta(seconds=30))
    assert renew(entry, tick, "r2", now + timedelta(seconds=30)) == entry
    assert renew(done, tick, "r2", now + timedelta(seconds=30)) == done
    # A schedule never seen starts from now: its last tick noted, nothing fired.
    first, fires = claim_tick(schedule, Entry(), now, "r1")
    assert fires is None and first == Entry(tick)


def test_an_entry_as_json_and_as_a_lease() -> None:
    tick = datetime(2026, 5, 1, 12, 15, tzinfo=UTC)
    at = datetime(2026, 5, 1, 12, 15, 0, 123456, tzinfo=UTC)
    entry = Entry(tick, 3, Claim(tick, "proxy-7d9f-abcde-12", at, done=False))
    # The local store's JSON is the format it always had.
    assert entry_to_json(entry) == {"last": "2026-05-01T12:15:00+00:00", "missed": 3, "claim": {
        "tick": "2026-05-01T12:15:00+00:00", "by": "proxy-7d9f-abcde-12", "at": "2026-05-01T12:15:00.123456+00:00",
        "done": False}}
    assert entry_from_json(entry_to_json(entry)) == entry
    junk: Any
    for junk in (None, [], "x", {"last": "soon", "claim": {"tick": 1}}):
        assert entry_from_json(junk) == Entry()
    created = lease_for("quarter", NAMESPACE, entry, None)
    assert created["metadata"]["name"] == "agentproxy-schedule-quarter"
    assert "resourceVersion" not in created["metadata"]
    assert created["spec"] == {"holderIdentity": "proxy-7d9f-abcde-12", "acquireTime": "2026-05-01T12:15:00.123456Z",
                               "renewTime": "2026-05-01T12:15:00.123456Z", "leaseDurationSeconds": 60,
                               "leaseTransitions": 0}
    assert created["metadata"]["labels"]["agentproxy.io/schedule"] == "quarter"
    assert "app.kubernetes.io/managed-by" not in created["metadata"]["labels"]  # not an agent's object
    assert entry_from_lease(created) == entry
    # A replacement carries the version read, keeps what others annotated, and counts a new holder.
    stored = {**created, "metadata": {**created["metadata"], "resourceVersion": "41",
                                      "annotations": {**created["metadata"]["annotations"], "note": "kept"}}}
    taken = Entry(tick, 3, Claim(tick, "proxy-7d9f-fghij-9", at + timedelta(seconds=61)))
    replaced = lease_for("quarter", NAMESPACE, taken, stored)
    assert replaced["metadata"]["resourceVersion"] == "41" and replaced["metadata"]["annotations"]["note"] == "kept"
    assert replaced["spec"]["leaseTransitions"] == 1 and entry_from_lease(replaced) == taken
    assert entry_from_lease(None) == Entry() and entry_from_lease({"metadata": {}, "spec": {}}) == Entry()


class LeasedBackend(MemoryBackend):
    """The memory backend with k8s mode's claims: Leases (in a :class:`LeaseServer`)."""

    def __init__(self, server: LeaseServer) -> None:
        super().__init__(upstream="http://127.0.0.1:9")
        self.server = server

    def schedule_claims(self) -> ScheduleLeases:
        return leases(self.server)


async def test_a_backend_with_shared_claims_has_the_scheduler_use_them_with_the_overlap_policy(settings, tmp_path) -> None:
    settings.local_mode.data_dir = str(tmp_path / "data")
    settings.triggers = TriggersSettings(schedules={"quarter": {"cron": "*/15 * * * *", "prompt": "q {{ tick }}",
                                                                "owner": "alice"}})
    server = LeaseServer()
    backend = LeasedBackend(server)
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        service = client.app[TRIGGERS]
        scheduler = service.scheduler
        assert scheduler is not None and isinstance(scheduler.store, ScheduleLeases)
        # The app's own loop looks on the real clock: stopped, and what it wrote forgotten, so that
        # this test drives the looks on its fake clock.
        assert service._loop is not None
        service._loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await service._loop
        server.objects.clear()
        clock = Clock(datetime(2026, 5, 1, 12, 0, 1, tzinfo=UTC))
        scheduler.clock = clock
        await scheduler.run_due()
        clock.now = datetime(2026, 5, 1, 12, 15, 0, 500000, tzinfo=UTC)
        assert [r[2] for r in await scheduler.run_due()] == ["created quarter-202605011215"]
        assert "quarter-202605011215" in backend.agents
        resp = await client.get("/schedules")
        assert resp.status == 200
        listed = (await resp.json())["schedules"][0]
        assert listed["last_tick"] == "2026-05-01T12:15:00+00:00" and listed["missed"] == 0
        assert listed["claim"] == {"tick": "2026-05-01T12:15:00+00:00", "by": scheduler.replica, "done": True}
        assert not (tmp_path / "data" / "triggers" / "schedules.json").exists()  # no file claims in this mode
        # The overlap policy (skip) as with the file's claims: the 12:15 run still works at 12:30.
        backend.activities["quarter-202605011215"] = AgentActivity("running")
        clock.now = datetime(2026, 5, 1, 12, 30, 2, tzinfo=UTC)
        assert [r[2] for r in await scheduler.run_due()] == ["skipped: quarter-202605011215 is still working"]
        assert list(backend.agents) == ["quarter-202605011215"]
        assert (await scheduler.store.read("quarter")).claim == Claim(
            datetime(2026, 5, 1, 12, 30, tzinfo=UTC), scheduler.replica, clock.now, done=True)
    finally:
        await client.close()
