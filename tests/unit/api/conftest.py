"""Fixtures of the HTTP layer tests: an imitation agentapi upstream, an in-memory
backend whose agents point at it, and the API served on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from agentproxy.api import create_app, hash_key
from agentproxy.api.fastpath import FastPathSite, server_options
from agentproxy.settings import Settings

from .memory_backend import MemoryBackend
from .upstream import ImitationAgent

ADMIN_KEY, ALICE_KEY, BOB_KEY = "admin-key-0123", "alice-key-4567", "bob-key-89ab"
KEYS = [
    {"name": "admin", "sha256": hash_key(ADMIN_KEY), "admin": True},
    {"name": "alice", "sha256": hash_key(ALICE_KEY), "admin": False},
    {"name": "bob", "sha256": hash_key(BOB_KEY)},
]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Upstream:
    """A running imitation agentapi server."""

    def __init__(self, agent: ImitationAgent, server: TestServer) -> None:
        self.agent = agent
        self.server = server
        self.url = f"http://127.0.0.1:{server.port}"


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


ApiFactory = Callable[..., Awaitable[TestClient]]


class FastPathTestServer(TestServer):
    """aiohttp's test server with its connections starting on the fast path, as ``agentproxy serve``'s do
    (with ``fast=False``: aiohttp's own site, every request on the full path), with the server
    options ``serve`` gives aiohttp."""

    site: FastPathSite | None = None

    def __init__(self, app: Any, *, fast: bool = True, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.fast = fast

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self.runner = await self._make_runner(handler_cancellation=True, **server_options(), **kwargs)
        await self.runner.setup()
        sock = self.socket_factory(self.host, 0, socket.AF_INET)
        if self.fast:
            self.site = FastPathSite(cast(web.AppRunner, self.runner), sock=sock)  # what _make_runner made
            await self.site.start()
        else:
            await web.SockSite(self.runner, sock).start()
        self.port = self.runner.addresses[0][1]
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


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


API = "/sessions/s1/agents/a1/api"
"""Where the API of agent a1 of session s1 (:func:`agent_api`'s agent) is proxied."""


@pytest.fixture
async def agent_api(api: TestClient) -> TestClient:
    """The API with one ready agent, a1 in session s1, whose upstream is the imitation."""
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    return api
