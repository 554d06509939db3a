"""Limits that protect the service, over HTTP: agents per session and per owner, creates
waiting for their turn (429 with a JSON error), and the largest body of the API routes
(413; the proxy route streams and is exempt). Nothing already there is lost."""

from __future__ import annotations

import asyncio

from agentproxy.backends.limits import CreateLimits

from .memory_backend import MemoryBackend
from .support import ALICE_KEY, BOB_KEY, KEYS, bearer


async def test_a_session_holds_at_most_its_limit_of_agents(make_api, backend):
    backend.set_limits(CreateLimits(per_session=2))
    api = await make_api()
    for agent_id in ("a1", "a2"):
        assert (await api.post("/sessions/s1/agents", json={"id": agent_id})).status == 201
    response = await api.post("/sessions/s1/agents", json={"id": "a3"})
    body = await response.json()
    assert response.status == 429 and body["error"]["code"] == "too_many", body
    assert "session 's1' is full: it holds the 2 agents" in body["error"]["message"]
    assert "agents.max_per_session" in body["error"]["message"]
    # A repeat is no new agent; another session has room; nothing was lost.
    assert (await api.post("/sessions/s1/agents", json={"id": "a2"})).status == 200
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"})).status == 201
    listed = await (await api.get("/sessions/s1/agents")).json()
    assert [a["id"] for a in listed["agents"]] == ["a1", "a2"]


async def test_an_owner_holds_at_most_its_limit_of_agents(make_api, backend):
    backend.set_limits(CreateLimits(per_owner=1))
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=bearer(ALICE_KEY))).status == 201
    response = await api.post("/sessions/s2/agents", json={"id": "a2"}, headers=bearer(ALICE_KEY))
    body = await response.json()
    assert response.status == 429 and "'alice' already owns 1 agents" in body["error"]["message"]
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"}, headers=bearer(BOB_KEY))).status == 201


class GatedBackend(MemoryBackend):
    """Creates wait until :attr:`gate` is set (a platform that is slow to answer)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.gate = asyncio.Event()
        self.entered = 0

    async def _create_new(self, spec, prepared):
        self.entered += 1
        await self.gate.wait()
        return await super()._create_new(spec, prepared)


async def test_creates_beyond_those_waiting_are_refused_at_once_and_none_is_lost(make_api, upstream):
    backend = GatedBackend(upstream.url)
    backend.set_limits(CreateLimits(concurrent=1, queued=1))
    api = await make_api(backend_=backend)
    first = asyncio.create_task(api.post("/sessions/s1/agents", json={"id": "a1"}))
    while backend.entered < 1:
        await asyncio.sleep(0.01)
    second = asyncio.create_task(api.post("/sessions/s1/agents", json={"id": "a2"}))
    while backend._create_queue.waiting < 1:
        await asyncio.sleep(0.01)
    refused = await api.post("/sessions/s1/agents", json={"id": "a3"})
    body = await refused.json()
    assert refused.status == 429 and refused.headers["Retry-After"] == "1", body
    assert "agents.max_queued_creates" in body["error"]["message"]
    backend.gate.set()
    assert [(await r).status for r in (first, second)] == [201, 201]
    listed = await (await api.get("/agents")).json()
    assert [a["id"] for a in listed["agents"]] == ["a1", "a2"]


async def test_a_body_over_the_limit_is_413_and_the_proxy_route_is_exempt(make_api, settings, backend):
    settings.server.max_body = 2048
    api = await make_api()
    response = await api.post("/sessions/s1/agents", json={"id": "a1", "message": "x" * 4000})
    body = await response.json()
    assert response.status == 413 and body["error"]["code"] == "payload_too_large", body
    assert "2048" in body["error"]["message"]
    assert (await api.get("/agents")).status == 200
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    proxied = await api.post("/sessions/s1/agents/a1/api/message", json={"content": "y" * 8000, "type": "user"})
    assert proxied.status == 200, await proxied.text()
