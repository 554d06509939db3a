"""What the HTTP layer's tests share: API keys, the proxied path of the test agent, the running
imitation upstream, the test server that starts connections on the fast path, and readers of
error bodies, event streams, metrics and the routes the app serves."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from agentproxy.api import create_app, hash_key
from agentproxy.api.openapi import PROXY_METHODS
from agentproxy.api.relay.fastpath import FastPathSite, server_options

from .memory_backend import MemoryBackend
from .upstream import ImitationAgent

HANG_GUARD = 10.0
"""Seconds after which a test that waits for something gives up (a bound, not a measurement)."""
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


async def error_of(response, status: int) -> dict:
    """The error object of a JSON error response with ``status``."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert {"code", "message"} <= set(body["error"])
    return body["error"]


async def next_line(response: aiohttp.ClientResponse) -> str:
    return (await asyncio.wait_for(response.content.readline(), HANG_GUARD)).decode()


async def next_status_event(response: aiohttp.ClientResponse) -> dict:
    """The data of the next ``status`` event (comment lines are skipped)."""
    while True:
        line = await next_line(response)
        assert line, "the stream ended"
        if line.startswith("event: "):
            assert line == "event: status\n"
            data = await next_line(response)
            assert data.startswith("data: ")
            assert await next_line(response) == "\n"
            return json.loads(data[len("data: "):])


async def read_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    """The next SSE event of ``response`` as its fields."""
    fields: dict[str, str] = {}
    while True:
        line = (await asyncio.wait_for(response.content.readline(), HANG_GUARD)).decode()
        assert line, "the stream ended"
        line = line.rstrip("\r\n")
        if not line:
            if fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


async def scrape(api) -> dict[tuple[str, tuple], float]:
    response = await api.get("/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def labels(**kw: str) -> tuple:
    return tuple(sorted(kw.items()))


def served_operations(settings) -> set[tuple[str, str]]:
    app = create_app(settings, MemoryBackend())
    operations = set()
    for route in app.router.routes():
        path = route.resource.canonical
        methods = PROXY_METHODS if route.method == "*" else (route.method.lower(),)
        operations |= {(path, m) for m in methods}
    return operations


def documented_operations(document: dict) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return {(path, m) for path, item in document["paths"].items() for m in item if m in methods}


async def open_stream(api, path: str = "/events", **kwargs) -> aiohttp.ClientResponse:
    response = await api.get(path, **kwargs)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await next_line(response) == ": connected\n"
    assert await next_line(response) == "\n"
    return response


async def next_event(response: aiohttp.ClientResponse) -> tuple[str | None, str, dict]:
    """(id, name, data) of the next event (comments skipped)."""
    event_id, name = None, None
    while True:
        line = await next_line(response)
        assert line, "the stream ended"
        if line.startswith("id: "):
            event_id = line[4:].rstrip("\n")
        elif line.startswith("event: "):
            name = line[7:].rstrip("\n")
        elif line.startswith("data: "):
            assert await next_line(response) == "\n"
            return event_id, name or "message", json.loads(line[len("data: "):])
