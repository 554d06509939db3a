"""What the HTTP layer's tests share: API keys, the proxied path of the test agent, the running
imitation upstream, and the test server that starts connections on the fast path."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from agentproxy.api import hash_key
from agentproxy.api.relay.fastpath import FastPathSite, server_options

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


API = "/sessions/s1/agents/a1/api"
"""Where the API of agent a1 of session s1 (:func:`agent_api`'s agent) is proxied."""
