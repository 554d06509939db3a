"""The fast path of proxied requests: what it relays itself, what it hands to aiohttp, and that a
connection moving from one to the other loses nothing (raw sockets, to control every byte)."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentproxy.api.relay.fastpath import ROUTE_LABEL
from agentproxy.api.relay.route import ROUTE

from .memory_backend import MemoryBackend
from .raw_agent import RawServer
from .raw_client import Raw, added, counts, get
from .support import ADMIN_KEY, ALICE_KEY, API, HANG_GUARD, KEYS, Upstream


async def test_requests_to_a_ready_agent_are_relayed_on_the_fast_path(agent_api, upstream: Upstream):
    before = counts(agent_api)
    raw = await Raw.open(agent_api.port)
    try:
        for _ in range(3):  # one kept-alive connection
            raw.send(get(f"{API}/status"))
            status, headers, body = await raw.answer()
            assert status == 200 and json.loads(body)["status"] == "stable"
            assert headers["content-type"].startswith("application/json")
    finally:
        await raw.close()
    assert added(agent_api, before) == (3, 0)
    seen = dict(upstream.agent.requests[-1].headers)
    assert seen["Host"] == "localhost"
    assert seen["X-Forwarded-For"] == "127.0.0.1"
    assert seen["X-Forwarded-Host"] == "proxy.test"
    metrics = await (await agent_api.get("/metrics")).text()
    assert f'agentproxy_http_requests_total{{method="GET",route="{ROUTE_LABEL}",status="200"}} 3.0' in metrics


def test_the_metrics_label_is_the_routes_own():
    assert ROUTE_LABEL == ROUTE.replace("{path:.*}", "{path}")


async def test_a_body_in_several_pieces_and_pipelined_requests_pass_in_order(agent_api, upstream: Upstream):
    body = json.dumps({"content": "hi", "type": "user"}).encode()
    head = (f"POST {API}/message HTTP/1.1\r\nHost: proxy.test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    before = counts(agent_api)
    raw = await Raw.open(agent_api.port)
    try:
        raw.send(head + body[:5])
        await asyncio.sleep(0.05)
        raw.send(body[5:] + get(f"{API}/messages") + get(f"{API}/status"))  # two more, without waiting
        status, _, answer = await raw.answer()
        assert status == 200 and json.loads(answer)["ok"] is True
        status, _, answer = await raw.answer()
        assert status == 200 and "hi" in json.loads(answer)["messages"][-1]["content"]
        status, _, answer = await raw.answer()
        assert status == 200 and "status" in json.loads(answer)
    finally:
        await raw.close()
    assert added(agent_api, before) == (3, 0)


async def test_a_connection_moves_to_the_full_path_at_the_first_request_it_cannot_relay(agent_api):
    before = counts(agent_api)
    raw = await Raw.open(agent_api.port)
    try:
        raw.send(get(f"{API}/status"))
        assert (await raw.answer())[0] == 200
        raw.send(get("/sessions/s1/agents") + get(f"{API}/status") + get("/sessions/s1/agents/nobody/api/status"))
        status, _, body = await raw.answer()
        assert status == 200 and [a["id"] for a in json.loads(body)["agents"]] == ["a1"]
        assert (await raw.answer())[0] == 200  # proxied by aiohttp's path now: same answer
        status, _, body = await raw.answer()
        assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    finally:
        await raw.close()
    assert added(agent_api, before) == (1, 1)


@pytest.mark.parametrize("request_bytes", [
    get(f"{API}/status", "Expect: 100-continue"),
    f"HEAD {API}/status HTTP/1.1\r\nHost: proxy.test\r\n\r\n".encode(),
    f"GET {API}/status HTTP/1.0\r\nHost: proxy.test\r\n\r\n".encode(),
    get(f"{API}/status", "Connection: close"),
    f"GET {API}/status HTTP/1.1\n\n".encode(),  # bare line feeds: aiohttp's parser judges them
    f"POST {API}/message HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".encode(),
    get("/sessions/s1/agents/a%31/api/status"),
], ids=["expect", "head", "http10", "close", "bare-lf", "chunked", "encoded-id"])
async def test_requests_out_of_the_common_case_get_the_full_paths_answer(agent_api, request_bytes: bytes):
    before = counts(agent_api)
    raw = await Raw.open(agent_api.port)
    try:
        raw.send(request_bytes)
        status = await raw.status()
    finally:
        await raw.close()
    assert added(agent_api, before) == (0, 1)
    assert status in (100, 200, 400, 405, 422)


async def test_an_invalid_or_missing_key_gets_the_full_paths_401(make_api, upstream: Upstream):
    api = await make_api(KEYS)
    created = await api.post("/sessions/s1/agents", json={"id": "a1"}, headers={"X-API-Key": ALICE_KEY})
    assert created.status == 201
    before = counts(api)
    raw = await Raw.open(api.port)
    try:
        raw.send(get(f"{API}/status", "Authorization: Bearer wrong"))
        status, headers, body = await raw.answer()
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    finally:
        await raw.close()
    for key, relayed in ((ALICE_KEY, 1), (ADMIN_KEY, 2)):  # the owner, then an admin
        raw = await Raw.open(api.port)
        try:
            raw.send(get(f"{API}/status", f"X-API-Key: {key}"))
            assert (await raw.answer())[0] == 200
        finally:
            await raw.close()
        assert added(api, before)[0] == relayed
    assert "X-API-Key" not in dict(upstream.agent.requests[-1].headers)  # the proxy's key stays with the proxy


async def test_a_request_cut_short_by_the_client_is_not_relayed(agent_api, upstream: Upstream):
    before = len(upstream.agent.requests)
    raw = await Raw.open(agent_api.port)
    raw.send(f"POST {API}/message HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100\r\n\r\n{{".encode())
    raw.writer.write_eof()
    assert await asyncio.wait_for(raw.reader.read(), HANG_GUARD) is not None
    await raw.close()
    assert len(upstream.agent.requests) == before


async def test_an_unreachable_agent_is_the_same_502_as_on_the_full_path(agent_api, upstream: Upstream):
    await upstream.server.close()
    raw = await Raw.open(agent_api.port)
    try:
        raw.send(get(f"{API}/status"))
        status, headers, body = await raw.answer()
    finally:
        await raw.close()
    full = await agent_api.get(f"{API}/status", headers={"Expect": "100-continue"})  # takes the full path
    assert status == full.status == 502
    assert headers["content-type"] == full.headers["Content-Type"]
    assert json.loads(body) == await full.json()


class ScriptedAgent:
    """An upstream that answers every request with the given pieces, each written on its own:
    the faults and framings of a chunked answer that a real agentapi does not produce on cue."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.connections = 0
        self.server = RawServer(self._answer)

    async def __aenter__(self) -> str:
        return await self.server.start()

    async def __aexit__(self, *exc) -> None:
        await self.server.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                for piece in self.pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.02)  # each piece arrives on its own
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("pieces, as_sent", [
    # Passed on as they came (a chunk extension shows it: framing anew would drop it).
    ([CHUNKED_HEAD, b"5;n=1\r\nhello\r\n", b"3;n=2\r\nabc\r\n", b"0\r\n\r\n"], True),
    # A chunk part-way in when the body starts to flow: its pieces are framed anew.
    ([CHUNKED_HEAD + b"5;n=1\r\nhel", b"lo\r\n3;n=2\r\nabc", b"\r\n0\r\n\r\n"], False),
    # Whole chunks that came with the head are framed anew, the rest passed on as it came.
    ([CHUNKED_HEAD + b"5;n=1\r\nhello\r\n", b"3;n=2\r\nabc\r\n0\r\n\r\n"], None),
], ids=["chunk-by-chunk", "part-way", "first-with-head"])
async def test_a_chunked_answer_arrives_whole_and_the_connection_serves_again(make_api, pieces, as_sent):
    async with (agent := ScriptedAgent(pieces)) as url:
        api = await make_api(backend_=MemoryBackend(upstream=url))
        assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        before = counts(api)
        raw = await Raw.open(api.port)
        try:
            for _ in range(2):
                raw.send(get(f"{API}/events"))
                status, headers, body = await raw.answer()
                assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"helloabc")
        finally:
            await raw.close()
        extensions = [line for line in raw.chunk_lines if b";" in line]
        if as_sent is True:
            assert extensions == [b"5;n=1", b"3;n=2"] * 2
        elif as_sent is False:
            assert extensions == []
        else:
            assert extensions == [b"3;n=2"] * 2
        assert added(api, before) == (2, 0) and agent.connections == 1


async def test_bytes_beyond_the_agents_answer_cut_the_client_connection(make_api):
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsneak"
    async with (agent := ScriptedAgent([CHUNKED_HEAD, b"5\r\nhello\r\n", b"0\r\n\r\n" + extra])) as url:
        api = await make_api(backend_=MemoryBackend(upstream=url))
        assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        raw = await Raw.open(api.port)
        try:
            raw.send(get(f"{API}/events"))
            await raw.reader.readuntil(b"\r\n\r\n")
            rest = await asyncio.wait_for(raw.reader.read(), HANG_GUARD)  # to the connection's end
        finally:
            await raw.close()
        assert rest.startswith(b"5\r\nhello\r\n")
        raw = await Raw.open(api.port)  # the agent's connection is not used again
        try:
            raw.send(get(f"{API}/status"))
            assert (await raw.answer())[2] == b"hello"
        finally:
            await raw.close()
        assert agent.connections == 2


class SilentAfterFirst(ScriptedAgent):
    """Answers the first request on a connection, then reads the next and never answers it."""

    def __init__(self) -> None:
        super().__init__([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
        self.closed = asyncio.Event()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.pieces[0])
            await reader.readuntil(b"\r\n\r\n")
            await reader.read()  # until the proxy closes the connection
            self.closed.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


async def test_a_client_leaving_before_the_answer_closes_the_agents_connection(make_api):
    async with (agent := SilentAfterFirst()) as url:
        api = await make_api(backend_=MemoryBackend(upstream=url))
        assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        raw = await Raw.open(api.port)
        raw.send(get(f"{API}/status"))
        assert (await raw.answer())[2] == b"ok"
        raw.send(get(f"{API}/status"))  # on the kept connection to the agent, which stays silent
        await asyncio.sleep(0.05)
        await raw.close()
        await asyncio.wait_for(agent.closed.wait(), HANG_GUARD)
        metrics = await (await api.get("/metrics")).text()
        assert f'agentproxy_http_requests_total{{method="GET",route="{ROUTE_LABEL}",status="499"}} 1.0' in metrics
        assert agent.connections == 1
