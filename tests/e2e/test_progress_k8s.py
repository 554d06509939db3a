"""Start progress in k8s mode through `agentproxy serve`: the steps a create goes through on
kwok's node arrive in order and end in ``ready``, a late subscriber gets them replayed, and a
start that cannot go on (a StorageClass that does not exist) ends with the agent's reason.
Two replicas number the changes of ``GET /events`` alike, and a client that reconnects to
the other one with ``Last-Event-ID`` misses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import aiohttp

from .kube import wait_for
from .served import Served

TIMEOUT = aiohttp.ClientTimeout(total=120)


async def steps_of(server: Served, session: str, agent_id: str) -> list[dict]:
    """Every step of the agent's start, read until its stream ends."""
    async with server.http.get(f"{server.base}/sessions/{session}/agents/{agent_id}/progress",
                               timeout=TIMEOUT) as resp:
        assert resp.status == 200, await resp.text()
        body = (await resp.read()).decode()
    return [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]


async def create(server: Served, agent_id: str) -> None:
    async with server.http.post(f"{server.base}/sessions/s1/agents", json={"id": agent_id}) as resp:
        assert resp.status == 201, await resp.text()


async def test_a_start_on_kwok_goes_through_its_steps_to_ready(servers):
    server = await servers.start()
    await create(server, "p1")
    steps = await steps_of(server, "s1", "p1")  # subscribed at once: live
    names = [s["step"] for s in steps]
    assert names[0] == "applied" and names[-1] == "ready", steps
    assert {"scheduled", "volume_bound", "container_started", "agentapi_answering"} <= set(names), steps
    assert names.index("scheduled") < names.index("container_started") < names.index("agentapi_answering")
    assert [s["index"] for s in steps] == list(range(len(steps)))
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    assert all(s["kind"] == "start" for s in steps), steps
    agent = await server.agent("s1", "p1")
    assert agent is not None and agent["status"] == "ready"
    # A late subscriber gets the same start replayed; so does a second proxy that never saw the create.
    assert await steps_of(server, "s1", "p1") == steps
    other = await servers.start()
    replayed = [s["step"] for s in await steps_of(other, "s1", "p1")]
    assert replayed[0] == "applied" and replayed[-1] == "ready"
    metrics = await server.metrics()
    key = ("agentproxy_agent_start_step_seconds_count", (("kind", "start"), ("step", "container_started")))
    assert metrics.get(key) == 1.0


async def test_a_start_without_its_storage_class_ends_with_the_binders_reason(servers):
    server = await servers.start("k8s_mode.storage_class=no-such-class")
    await create(server, "nostore")
    steps = await steps_of(server, "s1", "nostore")
    assert steps[0]["step"] == "applied" and steps[-1]["step"] == "failed", steps
    agent = await wait_for(lambda: server.agent("s1", "nostore"), "the agent")
    assert steps[-1]["reason"] == agent["reason"] == "ProvisioningFailed"
    assert steps[-1]["message"] == agent["message"]


class Stream:
    """The events (id, name, data) of one ``GET /events`` of a server, collected as they come."""

    def __init__(self, server: Served, last_event_id: str | None = None) -> None:
        self.seen: list[tuple[str | None, str, dict]] = []
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        self._task = asyncio.create_task(self._read(server, headers))

    async def _read(self, server: Served, headers: dict) -> None:
        async with server.http.get(f"{server.base}/events", headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=None)) as resp:
            assert resp.status == 200
            event_id, name = None, "message"
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    self.seen.append((event_id, name, json.loads(line[6:])))
                elif not line:
                    event_id, name = None, "message"

    async def first(self, matches: Callable[[tuple[str | None, str, dict]], bool], what: str) -> tuple:
        """The first event that ``matches``, once it arrived."""
        async def arrived():
            return next((e for e in self.seen if matches(e)), None)
        return await wait_for(arrived, what, timeout=120)

    async def until(self, agent_id: str, status: str) -> tuple:
        return await self.first(lambda e: e[2].get("id") == agent_id and e[2].get("status") == status,
                                f"an event of {agent_id} {status}")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_two_replicas_give_the_same_events_and_a_reconnect_misses_nothing(servers):
    first, second = await servers.start(), await servers.start()
    a, b = Stream(first), Stream(second)
    try:
        await create(first, "twice")
        ready_a, ready_b = await a.until("twice", "ready"), await b.until("twice", "ready")
        # Both replicas number the change by the resourceVersion of the object change they saw it in.
        assert ready_a[0] == ready_b[0] and ready_a[0] is not None
        assert ready_a[0].split(".")[0].isdigit()
    finally:
        await a.close()
        await b.close()
    # Away from the first replica; the agent is deleted meanwhile; back on the other one.
    async with first.http.delete(f"{first.base}/sessions/s1/agents/twice") as resp:
        assert resp.status == 200
    back = Stream(second, last_event_id=ready_a[0])
    try:
        gone = await back.first(lambda e: e[2].get("event") == "deleted", "the delete to be replayed")
        assert gone[2]["id"] == "twice"
        assert all(e[1] == "status" for e in back.seen)  # replayed, not a resync
        assert all(e[0] != ready_a[0] for e in back.seen)  # nothing the client had seen comes again
    finally:
        await back.close()
    stale = Stream(second, last_event_id="1")  # long before the replica's watches began
    try:
        await stale.first(lambda e: e[1] == "resync", "a resync")
    finally:
        await stale.close()
