"""Listing in k8s mode over real HTTP against a real API server: what ``GET /agents`` and a
session's list answer, after each kind of watch event (pods becoming ready, an edit out of
band, a pod deleted, an agent deleted), is exactly what deriving every agent from the cache
gives at that moment."""

from __future__ import annotations

import json

import aiohttp
from aiohttp.test_utils import TestServer

from agentproxy import naming
from agentproxy.api.app import create_app
from agentproxy.api.model import agent_json
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.kinds import POD
from agentproxy.spec import build_spec

from .agents import until_status
from .kube import request, wait_for

SESSIONS = {"s1": ["a1", "a2"], "s2": ["b1"]}


def fresh(backend, session: str | None = None) -> bytes:
    """The list body as the states derived from the cache now make it."""
    states = [s for s in (backend.state_of(a) for a in backend.cache.agent_ids()) if s is not None]
    states = sorted((s for s in states if session is None or s.session == session), key=lambda s: (s.created_at, s.id))
    return json.dumps({"agents": [agent_json(s) for s in states]}).encode()


async def lists_agree(http: aiohttp.ClientSession, base: str, backend) -> bool:
    """Every list the API answers is the fresh derivation, byte for byte."""
    for path, session in [("/agents", None), *((f"/sessions/{s}/agents", s) for s in SESSIONS)]:
        async with http.get(base + path) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            if await resp.read() != fresh(backend, session):
                return False
    return True


async def listed(http: aiohttp.ClientSession, url: str) -> list[dict]:
    async with http.get(url) as resp:
        return (await resp.json())["agents"]


async def test_lists_follow_every_watch_event(backend, api, namespace):
    server = TestServer(create_app(backend.settings, backend), host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        async with aiohttp.ClientSession() as http:
            for session, ids in SESSIONS.items():
                for agent_id in ids:
                    await backend.create(build_spec(backend.settings, session, agent_id))
            for session, ids in SESSIONS.items():
                for agent_id in ids:
                    await until_status(backend, agent_id, AgentStatus.READY, session=session)
            assert [a["id"] for a in await listed(http, f"{base}/sessions/s1/agents")] == ["a1", "a2"]
            assert [a["status"] for a in await listed(http, f"{base}/agents")] == ["ready"] * 3
            assert await lists_agree(http, base, backend)

            # An edit out of band (another proxy's record of activity): a MODIFIED event.
            sts = f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{naming.statefulset_name('a2')}"
            await request(api, "PATCH", sts, body={"metadata": {"annotations": {
                naming.ANNOTATION_LAST_ACTIVE: "2030-01-02T03:04:05Z"}}},
                headers={"Content-Type": "application/merge-patch+json"})

            async def shows_activity():
                agents = {a["id"]: a for a in await listed(http, f"{base}/sessions/s1/agents")}
                return agents["a2"]["last_active_at"] == "2030-01-02T03:04:05+00:00"
            await wait_for(shows_activity, "the list to show the new last activity of a2")
            assert await lists_agree(http, base, backend)

            # A pod deleted out of band: its agent goes through its states again.
            await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/pods/{naming.pod_name('a1')}")

            async def a1_restarted():
                agents = {a["id"]: a for a in await listed(http, f"{base}/agents")}
                pod = backend.cached_of_agent(POD, "a1")
                return agents["a1"]["status"] == "ready" and pod and not pod[0]["metadata"].get("deletionTimestamp")
            await wait_for(a1_restarted, "a1 to be ready again with a new pod")
            assert await lists_agree(http, base, backend)

            # An agent deleted: it leaves its session's list and the list of all.
            await backend.delete("s2", "b1")

            async def b1_gone():
                return await listed(http, f"{base}/sessions/s2/agents") == []
            await wait_for(b1_gone, "b1 to leave its session's list")
            assert [a["id"] for a in await listed(http, f"{base}/agents")] == ["a1", "a2"]
            assert await lists_agree(http, base, backend)
    finally:
        await server.close()
