"""Fixtures of the HTTP layer tests: an imitation agentapi upstream, an in-memory
backend whose agents point at it, and the API served on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.settings import Settings

from .memory_backend import MemoryBackend
from .support import ApiFactory, FastPathTestServer, Upstream
from .upstream import ImitationAgent


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    agent = ImitationAgent()
    server = TestServer(agent.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield Upstream(agent, server)
    finally:
        await server.close()


@pytest.fixture
def backend(upstream: Upstream) -> MemoryBackend:
    return MemoryBackend(upstream=upstream.url)


@pytest.fixture
async def make_api(settings: Settings, backend: MemoryBackend) -> AsyncIterator[ApiFactory]:
    """Serve the API (over ``backend`` unless another is given) on 127.0.0.1 and return a client
    (``fast=False``: without the fast path)."""
    clients: list[TestClient] = []

    async def make(api_keys: Any = (), backend_: Any = None, fast: bool = True, **kwargs: Any) -> TestClient:
        app = create_app(settings, backend if backend_ is None else backend_, api_keys, **kwargs)
        client = TestClient(FastPathTestServer(app, host="127.0.0.1", fast=fast))
        await client.start_server()
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> TestClient:
    """The API without keys (everything open, as on loopback)."""
    return await make_api()


@pytest.fixture
async def agent_api(api: TestClient) -> TestClient:
    """The API with one ready agent, a1 in session s1, whose upstream is the imitation."""
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    return api
