"""Framing of proxied requests and answers, attacked with raw sockets on both paths: the fast path
and aiohttp's (``fast=False``: a server without the fast path). The agent sees exactly the
requests the clients sent, each framed by the proxy, and clients see exactly the agent's first
answer, whatever bytes either side sends."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient

from agentproxy.api import create_app
from agentproxy.api.relay import fastpath

from .._support import settings_with
from .memory_backend import MemoryBackend
from .raw_agent import OK_BODY, RecordingAgent, ScriptedAnswer
from .raw_client import Raw, get
from .support import ALICE_KEY, API, HANG_GUARD, KEYS, FastPathTestServer

PATHS = pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "full-path"])

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
"""A request hidden in a body: an agent that reads the body as the next request answers it."""


async def served(make_api, url: str, fast: bool, keys=()) -> TestClient:
    """The API (fast path on or off) with agent a1 of session s1 at ``url`` (owned by alice with keys)."""
    api = await make_api(keys, backend_=MemoryBackend(upstream=url), fast=fast)
    created = await api.post("/sessions/s1/agents", json={"id": "a1"}, headers={"X-API-Key": ALICE_KEY})
    assert created.status == 201
    return api


async def exchange(port: int | None, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send ``request`` on a new connection; the status line, headers and body of the answer."""
    raw = await Raw.open(port)
    try:
        raw.send(request)
        _, headers, body = await raw.answer()
    finally:
        await raw.close()
    return raw.line, headers, body


def post(path: str, body: bytes, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: proxy.test", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- requests: the proxy frames what goes to the agent ------------------------------------------

@PATHS
@pytest.mark.parametrize("connection", ["Content-Length", "keep-alive, content-length"])
async def test_connection_cannot_drop_a_requests_length(make_api, fast, connection):
    async with (agent := RecordingAgent()) as url:
        api = await served(make_api, url, fast)
        raw = await Raw.open(api.port)
        try:
            raw.send(post(f"{API}/message", SMUGGLED, f"Connection: {connection}",
                          f"Content-Length: {len(SMUGGLED)}"))
            status, _, body = await raw.answer()
            assert (status, body) == (200, OK_BODY)
            raw.send(get(f"{API}/status"))  # on the same connections: no answer meant for another
            assert (await raw.answer())[2] == OK_BODY
        finally:
            await raw.close()
        assert [(r.method, r.target, r.body) for r in agent.requests] == [
            ("POST", "/message", SMUGGLED), ("GET", "/status", b"")]
        assert agent.requests[0].header("Content-Length") == [str(len(SMUGGLED))] and not agent.errors


@PATHS
async def test_connection_cannot_drop_a_requests_chunked_coding(make_api, fast):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)
    async with (agent := RecordingAgent()) as url:
        api = await served(make_api, url, fast)
        line, _, body = await exchange(api.port, post(f"{API}/message", chunked, "Connection: transfer-encoding",
                                                       "Transfer-Encoding: chunked"))
        assert (line, body) == (b"HTTP/1.1 200 OK", OK_BODY)
        assert [(r.method, r.target, r.body) for r in agent.requests] == [("POST", "/message", SMUGGLED)]


@PATHS
async def test_a_cors_preflight_of_the_compat_layer_is_answered_without_the_agent(make_api, fast):
    settings = settings_with("compat.agentapi_proxy.enabled=true", "compat.agentapi_proxy.session=peer")
    async with (agent := RecordingAgent()) as url:
        backend = MemoryBackend(upstream=url)
        client = TestClient(FastPathTestServer(create_app(settings, backend, KEYS), host="127.0.0.1", fast=fast))
        await client.start_server()
        try:
            created = await client.post("/sessions/peer/agents", json={"id": "a1"}, headers={"X-API-Key": ALICE_KEY})
            assert created.status == 201
            for target in ("/a1/message", "/no-such-session/message"):
                # No key, and a body holding a request: nothing of it may reach an agent.
                line, headers, _ = await exchange(client.port, (
                    f"OPTIONS {target} HTTP/1.1\r\nHost: proxy.test\r\nOrigin: http://elsewhere.test\r\n"
                    f"Access-Control-Request-Method: POST\r\nConnection: content-length\r\n"
                    f"Content-Length: {len(SMUGGLED)}\r\n\r\n").encode() + SMUGGLED)
                assert line.split(b" ")[1] == b"204"
                assert headers["access-control-allow-origin"] == "*"
                assert "X-API-Key" in headers["access-control-allow-headers"]
            assert agent.requests == [] and agent.connections == 0
        finally:
            await client.close()


@PATHS
async def test_an_absolute_form_target_reaches_the_agent_as_its_path(make_api, fast):
    async with (agent := RecordingAgent()) as url:
        api = await served(make_api, url, fast)
        line, _, body = await exchange(
            api.port, f"GET http://proxy.test{API}/messages?after=1 HTTP/1.1\r\nHost: proxy.test\r\n\r\n".encode())
        assert (line, body) == (b"HTTP/1.1 200 OK", OK_BODY)
        assert [r.target for r in agent.requests] == ["/messages?after=1"]


@PATHS
@pytest.mark.parametrize("extra", [
    [f"X-Long: {'a' * 9000}"],
    [f"X-Many-{n}: v" for n in range(200)],
    ["Host: other.test"],
    ["Content-Type: application/json", "Content-Type: text/plain"],
], ids=["long-line", "too-many", "two-hosts", "two-content-types"])
async def test_heads_aiohttp_refuses_are_refused_on_both_paths(make_api, fast, extra):
    async with (agent := RecordingAgent()) as url:
        api = await served(make_api, url, fast)
        line, _, _ = await exchange(api.port, post(f"{API}/message", b"{}", "Content-Length: 2", *extra))
        assert line.split(b" ")[1] == b"400"
        assert agent.requests == []


@PATHS
async def test_expect_100_continue_is_answered_only_after_the_key_is_checked(make_api, fast):
    async with (agent := RecordingAgent()) as url:
        api = await served(make_api, url, fast, keys=KEYS)
        head = post(f"{API}/message", b"", "Expect: 100-continue", "Content-Length: 2")
        line, headers, body = await exchange(api.port, head)  # and no body: a client waiting for 100
        assert line.split(b" ")[1] == b"401" and json.loads(body)["error"]["code"] == "unauthorized"
        raw = await Raw.open(api.port)
        try:
            raw.send(post(f"{API}/message", b"", "Expect: 100-continue", "Content-Length: 2",
                          f"X-API-Key: {ALICE_KEY}"))
            assert await raw.status() == 100
            raw.send(b"{}")
            status, _, body = await raw.answer()
            assert (status, body) == (200, OK_BODY)
        finally:
            await raw.close()
        assert [(r.target, r.body) for r in agent.requests] == [("/message", b"{}")]


@PATHS
@pytest.mark.parametrize("first", [b"", get("/healthz")], ids=["new", "after-a-request"])
async def test_a_connection_without_a_whole_head_is_closed_at_the_keep_alive_deadline(make_api, monkeypatch,
                                                                                      fast, first):
    monkeypatch.setattr(fastpath, "KEEPALIVE_TIMEOUT", 0.5)
    async with RecordingAgent() as url:
        api = await served(make_api, url, fast)
        raw = await Raw.open(api.port)
        try:
            if first:
                raw.send(first)
                assert (await raw.answer())[0] == 200
            raw.send(b"GET /sessions/s1/agents/a1/api/sta")  # and nothing more
            assert await asyncio.wait_for(raw.reader.read(), HANG_GUARD) == b""
        finally:
            await raw.close()


# --- answers: the client gets the agent's first answer, nothing more ------------------------------

@PATHS
async def test_a_second_answer_in_the_agents_bytes_is_never_relayed(make_api, fast):
    second = b"HTTP/1.1 201 Sneaked\r\nX-Second: yes\r\nContent-Length: 5\r\n\r\nsneak"
    ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(OK_BODY), OK_BODY)
    async with (agent := ScriptedAnswer(ok + second)) as url:
        api = await served(make_api, url, fast)
        raw = await Raw.open(api.port)
        try:
            for _ in range(2):
                raw.send(get(f"{API}/status"))
                head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), HANG_GUARD)
                assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"X-Second" not in head
                assert head.lower().count(b"content-type") == 1
                assert await raw.reader.readexactly(len(OK_BODY)) == OK_BODY
        finally:
            await raw.close()
        assert agent.connections == 2  # the connection that carried more than its answer is not used again


@PATHS
async def test_trailers_never_reach_the_head(make_api, fast):
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n"
    async with ScriptedAnswer(chunked) as url:
        api = await served(make_api, url, fast)
        raw = await Raw.open(api.port)
        try:
            for _ in range(2):
                raw.send(get(f"{API}/events"))
                status, headers, body = await raw.answer()
                assert (status, body) == (200, b"ok") and "x-trailer" not in headers
        finally:
            await raw.close()


@PATHS
@pytest.mark.parametrize("head", [
    b"".join(b"X-N-%d: v\r\n" % n for n in range(5000)),
    b"X-Big: " + b"a" * (1024 * 1024) + b"\r\n",
], ids=["many-headers", "huge-header"])
async def test_an_agents_oversized_head_is_a_502(make_api, fast, head):
    async with ScriptedAnswer(b"HTTP/1.1 200 OK\r\n" + head + b"Content-Length: 2\r\n\r\nok") as url:
        api = await served(make_api, url, fast)
        line, headers, body = await exchange(api.port, get(f"{API}/status"))
        assert line == b"HTTP/1.1 502 Bad Gateway" and json.loads(body)["error"]["code"] == "bad_gateway"
        assert "x-big" not in headers and "x-n-1" not in headers


@PATHS
async def test_an_answer_read_to_the_connections_end_arrives_whole(make_api, fast):
    body = b"x" * 300_000 + b"the end"
    async with ScriptedAnswer(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body, close=True) as url:
        api = await served(make_api, url, fast)
        line, headers, got = await exchange(api.port, get(f"{API}/status"))
        assert (line, headers["transfer-encoding"], len(got)) == (b"HTTP/1.1 200 OK", "chunked", len(body))
        assert got == body


@PATHS
@pytest.mark.parametrize("reason", [b"O\x01K", b"OK\x7f", b"\x1b[31mOK"], ids=["soh", "del", "escape"])
async def test_a_reason_phrase_with_control_bytes_is_not_relayed(make_api, fast, reason):
    async with ScriptedAnswer(b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok") as url:
        api = await served(make_api, url, fast)
        line, _, body = await exchange(api.port, get(f"{API}/status"))
        assert (line, body) == (b"HTTP/1.1 200 OK", b"ok")


@PATHS
async def test_an_idempotent_request_goes_once_more_when_a_new_connection_is_closed_unanswered(make_api, fast):
    # agentapi closes the connection without an answer when a handler panics (a race of its GET
    # /messages with a growing conversation); that GET goes again, on another new connection.
    async with (agent := ScriptedAnswer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", drop=1)) as url:
        api = await served(make_api, url, fast)
        line, _, body = await exchange(api.port, get(f"{API}/messages"))
        assert (line, body, agent.connections) == (b"HTTP/1.1 200 OK", b"ok", 2)


@PATHS
async def test_a_request_the_agent_never_answers_goes_at_most_twice_and_a_body_never_twice(make_api, fast):
    async with (agent := ScriptedAnswer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", drop=10)) as url:
        api = await served(make_api, url, fast)
        line, _, body = await exchange(api.port, get(f"{API}/messages"))
        assert line == b"HTTP/1.1 502 Bad Gateway" and json.loads(body)["error"]["code"] == "bad_gateway"
        assert agent.connections == 2
        line, _, body = await exchange(api.port, post(f"{API}/message", b"{}", "Content-Length: 2",
                                                      "Content-Type: application/json"))
        assert line == b"HTTP/1.1 502 Bad Gateway" and agent.connections == 3  # a POST is never sent twice
