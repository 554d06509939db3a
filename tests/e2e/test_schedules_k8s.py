"""Schedules in k8s mode, with two `agentproxy serve` replicas that share no disk (each its own
data directory) against a real API server: each tick is claimed through the schedule's Lease and
fired by exactly one replica (one agent, one counted run), and a claim left open by a replica
that died is taken over once stale. The schedules run every minute on the real clock, so these
tests take a few minutes."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from agentproxy.backends.k8s.kinds import LEASE, STATEFULSET
from agentproxy.triggers.claims import DONE, TICK, Claim, Entry, lease_for, lease_name

from .kube import get, request, wait_for
from .served import Served


def _schedule(overlap: str) -> str:
    return f"triggers.schedules={{every: {{cron: '* * * * *', prompt: run, owner: ops, overlap: {overlap}}}}}"


async def _replicas(servers: Any, tmp_path: Any, overlap: str) -> list[Served]:
    return [await servers.start(_schedule(overlap), f"local_mode.data_dir={tmp_path / f'data-{n}'}")
            for n in range(2)]


def _replica_id(served: Served) -> str:
    """The replica's name in its claims (host and process)."""
    assert served.proc is not None
    return f"{socket.gethostname()}-{served.proc.pid}"


async def _runs(replicas: list[Served]) -> list[dict]:
    """The schedule's runs every replica recorded."""
    runs = []
    for served in replicas:
        status, body, _ = await served.call("GET", "/triggers/deliveries?kind=schedule&limit=500")
        assert status == 200, body
        runs += body["deliveries"]
    return runs


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


async def test_two_replicas_fire_each_tick_once_and_the_lease_shows_the_holder(servers, api, namespace, tmp_path):
    replicas = await _replicas(servers, tmp_path, "replace")
    names = {_replica_id(r) for r in replicas}
    # Two whole ticks after both replicas run.
    last = _minute(datetime.now(UTC)) + timedelta(minutes=2)
    path = LEASE.item(namespace, lease_name("every"))

    async def done() -> dict | None:
        lease = await get(api, path)
        annotations = ((lease or {}).get("metadata") or {}).get("annotations") or {}
        return lease if annotations.get(TICK) == last.isoformat() and annotations.get(DONE) == "true" else None

    lease = await wait_for(done, f"the run of {last:%H:%M} to be done", timeout=240)
    runs = await _runs(replicas)
    by_tick = Counter(run["tick"] for run in runs)
    assert len(by_tick) >= 2 and (last - timedelta(minutes=1)).isoformat() in by_tick, runs
    assert all(count == 1 for count in by_tick.values()), runs  # no tick fired by both replicas
    for run in runs:
        assert run["replica"] in names and str(run["result"]).startswith(
            f"created every-{datetime.fromisoformat(run['tick']):%Y%m%d%H%M}"), run
    labels = tuple(sorted({"kind": "schedule", "name": "every", "outcome": "created"}.items()))
    counts = [(await r.metrics()).get(("agentproxy_trigger_deliveries_total", labels), 0.0) for r in replicas]
    assert sum(counts) == len(by_tick), counts
    # The Lease: the replica that fired the latest tick holds it.
    fired_last = next(run["replica"] for run in runs if run["tick"] == last.isoformat())
    assert lease["spec"]["holderIdentity"] == fired_last and lease["spec"]["leaseDurationSeconds"] == 60
    # The latest tick's agent is in the cluster (the earlier runs' were replaced by it).
    assert await get(api, STATEFULSET.item(namespace, f"agent-every-{last:%Y%m%d%H%M}")) is not None
    # Both replicas list the same claim.
    for served in replicas:
        status, body, _ = await served.call("GET", "/schedules")
        assert status == 200, body
        claim = body["schedules"][0]["claim"]
        assert claim["by"] in names and claim["tick"] >= last.isoformat(), body


async def test_a_claim_left_open_by_a_replica_that_died_is_taken_over(servers, api, namespace, tmp_path):
    # The Lease as a replica leaves it that claimed this minute's tick and died before the agent
    # was made: its claim becomes stale about 25 s from now.
    now = datetime.now(UTC)
    tick = _minute(now)
    gone = Entry(tick, 0, Claim(tick, "gone-replica", now - timedelta(seconds=35)))
    await request(api, "POST", LEASE.collection(namespace), body=lease_for("every", namespace, gone, None))
    replicas = await _replicas(servers, tmp_path, "skip")
    names = {_replica_id(r) for r in replicas}

    async def taken_over() -> list[dict]:
        return [run for run in await _runs(replicas) if run["tick"] == tick.isoformat()]

    runs = await wait_for(taken_over, f"the run of {tick:%H:%M} to be taken over", timeout=120)
    await asyncio.sleep(2)  # the other replica's next look, had it fired too
    runs = await taken_over()
    assert len(runs) == 1 and runs[0]["replica"] in names, runs
    assert runs[0]["result"] == f"created every-{tick:%Y%m%d%H%M}", runs
    assert await get(api, STATEFULSET.item(namespace, f"agent-every-{tick:%Y%m%d%H%M}")) is not None
    lease = await get(api, LEASE.item(namespace, lease_name("every")))
    assert lease is not None and lease["spec"]["holderIdentity"] in names
    assert lease["spec"]["leaseTransitions"] >= 1
