"""Two `agentproxy serve` replicas with a few hundred agents while the API server fails:
frozen for 30 s (SIGSTOP, then SIGCONT), and killed and started again.

Throughout: reads are served from the cache; ``/readyz`` turns 503 while the server is
silent and 200 again once it answers; a create during the fault is refused with 503 and
``Retry-After`` and leaves nothing behind; afterwards creates work, status events resume
on every replica, and every agent has exactly one object of each kind. How fast readiness
comes back is measured by ``benchmarks/faults.py``, not asserted here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from functools import partial

import pytest
import pytest_asyncio

from . import apiserver
from .kube import fresh_namespace, get, request, wait_for
from .served import Servers

pytestmark = pytest.mark.asyncio(loop_scope="module")

AGENTS = 200
"""Agents created before the faults (half through each replica)."""
FREEZE = 30.0
SESSIONS = ("team-a", "team-b")
KINDS = {"statefulsets": "/apis/apps/v1", "services": "/api/v1", "configmaps": "/api/v1",
         "persistentvolumeclaims": "/api/v1"}


class Fleet:
    """The namespace, the two replicas and what the tests learned on the way."""

    def __init__(self, api, namespace: str, servers: Servers) -> None:
        self.api, self.namespace, self.servers = api, namespace, servers
        self.replicas = servers.started
        self.ids: set[str] = set()
        self.session_of: dict[str, str] = {}
        self.seen: list[list[dict]] = [[] for _ in self.replicas]
        self._readers: list[asyncio.Task] = []

    async def create(self, index: int, session: str, agent_id: str) -> tuple[int, dict, dict]:
        """A create through replica ``index % 2``."""
        answer = await self.replicas[index % 2].call("POST", f"/sessions/{session}/agents", {"id": agent_id})
        if answer[0] == 201:
            self.ids.add(agent_id)
            self.session_of[agent_id] = session
        return answer

    def follow_events(self) -> None:
        """Keep every status event of each replica in :attr:`seen`."""
        async def read(i: int) -> None:
            async for event in self.replicas[i].events():
                self.seen[i].append(event)
        self._readers = [asyncio.create_task(read(i)) for i in range(len(self.replicas))]

    async def stop_following(self) -> None:
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def readiness(self) -> list[int]:
        return list(await asyncio.gather(*(r.readyz() for r in self.replicas)))

    async def objects(self) -> dict[str, Counter]:
        """How many objects of each kind each agent has."""
        counts = {}
        for plural, prefix in KINDS.items():
            _, body = await request(self.api, "GET", f"{prefix}/namespaces/{self.namespace}/{plural}",
                                    params={"labelSelector": "app.kubernetes.io/managed-by=agentproxy"})
            counts[plural] = Counter(o["metadata"]["labels"]["agentproxy.io/agent-id"] for o in body["items"])
        return counts

    async def check_whole(self) -> None:
        """Every agent the replicas list is whole: one object of each kind, no other agents."""
        for plural, per_agent in (await self.objects()).items():
            assert set(per_agent) == self.ids, (plural, set(per_agent) ^ self.ids)
            assert set(per_agent.values()) == {1}, (plural, [a for a, n in per_agent.items() if n != 1])
        for replica in self.replicas:
            status, body, _ = await replica.call("GET", "/agents")
            assert status == 200 and {a["id"] for a in body["agents"]} == self.ids

    async def all_ready(self) -> bool:
        for replica in self.replicas:
            status, body, _ = await replica.call("GET", "/agents?status=ready")
            if status != 200 or {a["id"] for a in body["agents"]} != self.ids:
                return False
        return True

    async def event_of(self, index: int, agent_id: str, status: str) -> bool:
        return any(e["id"] == agent_id and e["status"] == status for e in self.seen[index])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fleet(kubeconfig, tmp_path_factory):
    apiserver.require_local_control_plane()
    import kr8s.asyncio

    api = await kr8s.asyncio.api(kubeconfig=kubeconfig)
    async with _namespace_gone_after(api) as namespace:
        servers = Servers(kubeconfig, namespace, tmp_path_factory.mktemp("faults"))
        try:
            await asyncio.gather(servers.start(), servers.start())
            fleet = Fleet(api, namespace, servers)
            gate = asyncio.Semaphore(32)

            async def create(i: int) -> None:
                async with gate:
                    status, body, _ = await fleet.create(i, SESSIONS[i % 2], f"agent-{i}")
                    assert status == 201, body
            await asyncio.gather(*(create(i) for i in range(AGENTS)))
            await wait_for(fleet.all_ready, f"{AGENTS} agents to be ready on both replicas", timeout=240)
            fleet.follow_events()
            yield fleet
            await fleet.stop_following()
        finally:
            await servers.close()


@contextlib.asynccontextmanager
async def _namespace_gone_after(api):
    """A fresh namespace, and after the tests the wait until it and its agents are gone: the
    tests after these would otherwise share the control plane with hundreds of deletions."""
    async with fresh_namespace(api) as namespace:
        yield namespace
    await wait_for(lambda: _gone(api, f"/api/v1/namespaces/{namespace}"), f"namespace {namespace} to be deleted",
                   timeout=300)


async def _gone(api, path: str) -> bool:
    return await get(api, path) is None


async def test_a_frozen_api_server_makes_both_replicas_unready_and_they_recover(fleet):
    replica_a, replica_b = fleet.replicas
    async with apiserver.frozen():
        started = time.monotonic()
        # A create sent before the replica notices the silence: cut off half-way, it fails
        # once its call times out, and what it made is rolled back once the server answers.
        cut_off = asyncio.create_task(fleet.create(0, "team-a", "cut-off"))
        await wait_for(lambda: _all(fleet.readiness(), 503), "both replicas to answer /readyz 503", timeout=FREEZE)
        status, body, _ = await replica_a.call("GET", "/readyz")
        assert "has not answered" in body["error"]["message"], body

        # A create is refused at once, and reads still come from the cache.
        status, body, headers = await replica_a.call("POST", "/sessions/team-a/agents", {"id": "during-freeze"})
        assert status == 503 and body["error"]["code"] == "unavailable", body
        assert int(headers["Retry-After"]) >= 1
        status, body, _ = await replica_b.call("GET", "/agents")
        # (the cut-off create may have made its claim before the freeze took hold)
        assert status == 200 and fleet.ids <= {a["id"] for a in body["agents"]} <= fleet.ids | {"cut-off"}
        status, body, headers = await cut_off
        assert status == 503 and "Retry-After" in headers, body
        await asyncio.sleep(max(0.0, FREEZE - (time.monotonic() - started)))

    await wait_for(lambda: _all(fleet.readiness(), 200), "both replicas to be ready again")
    await _after_the_fault(fleet, "after-freeze")  # ends once no object of another agent is left


async def test_a_killed_and_restarted_api_server_and_both_replicas_recover(fleet):
    restarting = await apiserver.restart()
    seen = set()
    while restarting.returncode is None:
        seen.update(await fleet.readiness())
        try:
            await asyncio.wait_for(restarting.wait(), 0.2)
        except TimeoutError:
            pass
    assert restarting.returncode == 0, (await restarting.stderr.read()).decode()
    assert 503 in seen, seen  # the broken watches (and the silence) showed
    await wait_for(lambda: _all(fleet.readiness(), 200), "both replicas to be ready again")
    await _after_the_fault(fleet, "after-restart")


async def _after_the_fault(fleet: Fleet, new_id: str) -> None:
    """Creates and deletes work through either replica, both see them as events, and every
    agent is whole."""
    status, body, _ = await fleet.create(1, "team-b", new_id)
    assert status == 201, body
    for i in range(2):
        await wait_for(partial(fleet.event_of, i, new_id, "ready"), f"replica {i} to announce {new_id} ready")
    gone = sorted(fleet.ids - {new_id})[0]
    status, body, _ = await fleet.replicas[0].call("DELETE", f"/sessions/{fleet.session_of[gone]}/agents/{gone}"
                                                             "?purge=true")
    assert status == 200, body
    fleet.ids.discard(gone)

    async def deleted(i: int) -> bool:
        return any(e["id"] == gone and e["event"] == "deleted" for e in fleet.seen[i])
    for i in range(2):
        await wait_for(partial(deleted, i), f"replica {i} to announce {gone} deleted")
    await wait_for(fleet.all_ready, "every agent to be listed ready by both replicas")

    async def whole() -> bool:
        try:
            await fleet.check_whole()
        except AssertionError:
            return False
        return True
    await wait_for(whole, "every agent to have one object of each kind, and no other agent any")
    await fleet.check_whole()


async def _all(statuses, wanted: int) -> bool:
    return all(s == wanted for s in await statuses)
