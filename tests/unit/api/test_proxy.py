"""The reverse proxy to each agent's API, against an imitation agentapi on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from agentproxy.api.relay.pool import UpstreamPool
from agentproxy.api.relay.route import request_head
from agentproxy.api.relay.rules import upstream_target
from agentproxy.backends.base import AgentStatus
from testenv.ports import free_port

from .memory_backend import MemoryBackend
from .support import API, Upstream, error_of, read_event

HANG_GUARD = 10.0
"""Seconds after which a test that waits for something gives up (a bound, not a measurement)."""


async def test_path_and_query_string_reach_the_upstream_unchanged(agent_api, upstream: Upstream):
    raw = "/debug/headers?b=2&a=1&text=%20x%2Fy&flag"
    url = URL(f"http://127.0.0.1:{agent_api.port}{API}{raw}", encoded=True)
    response = await agent_api.session.get(url)
    assert response.status == 200
    assert (await response.json())["raw_path"] == raw
    pool = UpstreamPool()
    assert pool.address("http://127.1.0.5:3284") == pool.address("http://127.1.0.5:3284/") == ("127.1.0.5", 3284, "")
    assert upstream_target("/sessions/s/agents/a/api/x%2Fy?q=%41") == "/x%2Fy?q=%41"
    assert upstream_target("/sessions/s/agents/a/api/") == "/"


async def test_every_method_is_forwarded(agent_api, upstream: Upstream):
    head = await agent_api.head(f"{API}/status")
    assert head.status == 200 and int(head.headers["Content-Length"]) > 0
    for method in ("PUT", "PATCH", "DELETE", "OPTIONS"):
        response = await agent_api.request(method, f"{API}/status")
        assert response.status == 405, method  # the imitation's answer: /status is GET only
        assert upstream.agent.requests[-1].method == method


async def test_host_is_localhost_and_x_forwarded_headers_are_set(agent_api, upstream: Upstream):
    # The imitation refuses other hosts, as agentapi does...
    async with aiohttp.ClientSession() as direct:
        async with direct.get(f"{upstream.url}/status", headers={"Host": "agents.example"}) as refused:
            assert refused.status == 400 and await refused.text() == "Invalid host header"
    # ...and answers through the proxy whatever Host the caller used.
    response = await agent_api.get(f"{API}/debug/headers", headers={
        "Host": "agents.example:8443", "X-Forwarded-For": "192.0.2.7", "Authorization": "Bearer secret",
        "X-Forwarded-Proto": "gopher", "X-End-To-End": "kept"})
    assert response.status == 200
    seen = dict((await response.json())["headers"])
    assert seen["Host"] == "localhost"
    assert seen["X-Forwarded-For"] == "192.0.2.7, 127.0.0.1"
    assert seen["X-Forwarded-Proto"] == "http"
    assert seen["X-Forwarded-Host"] == "agents.example:8443"
    assert seen["X-End-To-End"] == "kept"
    assert "Authorization" not in seen  # agentproxy's credentials stay here
    assert seen["User-Agent"] == response.request_info.headers["User-Agent"]
    # Nothing is added on the way: a caller that sends no User-Agent or Accept-Encoding gets none sent.
    async with aiohttp.ClientSession(skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")) as bare:
        async with bare.get(f"http://127.0.0.1:{agent_api.port}{API}/debug/headers") as plain:
            names = {name for name, _ in (await plain.json())["headers"]}
    assert names == {"Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}


async def test_hop_by_hop_headers_are_dropped_both_ways(agent_api, upstream: Upstream):
    response = await agent_api.get(f"{API}/debug/headers", headers={
        "Connection": "keep-alive, X-Private-Hop", "X-Private-Hop": "1", "Keep-Alive": "timeout=5",
        "TE": "trailers", "Proxy-Authorization": "Basic eA==", "Trailer": "X-Sum", "X-Kept": "yes"})
    seen = {name.lower() for name, _ in (await response.json())["headers"]}
    assert "x-kept" in seen
    for name in ("x-private-hop", "keep-alive", "te", "proxy-authorization", "trailer"):
        assert name not in seen, name
    # The imitation answers with hop-by-hop headers of its own; they stop at the proxy.
    async with aiohttp.ClientSession() as direct:
        async with direct.get(f"{upstream.url}/debug/headers") as raw:
            assert raw.headers["Connection"] == "X-Hop-Secret" and "Proxy-Authenticate" in raw.headers
    for name in ("X-Hop-Secret", "Proxy-Authenticate", "Trailer"):
        assert name not in response.headers, name
    assert response.headers["X-Agent"] == "imitation"


def test_request_headers_drop_every_hop_by_hop_header():
    request = make_mocked_request("POST", "/sessions/s/agents/a/api/x", headers={
        "Host": "h:1", "Connection": "Upgrade, X-A", "Upgrade": "websocket", "X-A": "1",
        "Transfer-Encoding": "chunked", "Proxy-Connection": "keep-alive", "Proxy-Anything": "x",
        "Expect": "100-continue", "X-API-Key": "k", "Content-Type": "application/json", "Content-Length": "2",
    })
    lines = request_head(request, "/").decode("latin-1").split("\r\n")
    assert lines[0] == "POST / HTTP/1.1" and lines[-2:] == ["", ""]
    headers = dict(line.split(": ", 1) for line in lines[1:-2])
    assert {k.lower() for k in headers} == {"host", "content-type", "content-length", "x-forwarded-for",
                                            "x-forwarded-proto", "x-forwarded-host"}
    assert headers["Host"] == "localhost"


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_10_mb_upload_streams_through(agent_api, upstream: Upstream, with_length: bool):
    boundary = "agentproxy-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = os.urandom(1024 * 1024)
    blocks = 10
    digest = hashlib.sha256(block * blocks).hexdigest()

    async def body():
        yield head
        yield block
        # The rest is sent only once the agent has read some of the file: a proxy that held the
        # whole body before forwarding it could never get past this point.
        for _ in range(int(HANG_GUARD / 0.01)):
            if upstream.agent.upload_progress > 0:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the agent saw nothing of the upload before it ended")
        for _ in range(blocks - 1):
            yield block
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if with_length:
        headers["Content-Length"] = str(len(head) + len(block) * blocks + len(tail))
    response = await agent_api.post(f"{API}/upload", data=body(), headers=headers)
    assert response.status == 200, await response.text()
    result = await response.json()
    assert result["bytes"] == len(block) * blocks and result["sha256"] == digest
    received = dict(upstream.agent.requests[-1].headers)
    if with_length:
        assert received["Content-Length"] == headers["Content-Length"]
    else:
        assert received["Transfer-Encoding"] == "chunked"


async def test_a_10_mb_download_streams_back(agent_api):
    size = 10 * 1024 * 1024 + 7
    response = await agent_api.get(f"{API}/debug/download?size={size}")
    assert response.status == 200 and response.headers["Content-Length"] == str(size)
    total = 0
    async for chunk in response.content.iter_any():
        total += len(chunk)
    assert total == size


async def test_an_upstream_that_breaks_off_mid_response_cuts_the_client_connection(agent_api):
    response = await agent_api.get(f"{API}/debug/download?size=1000000&cut=200000")
    assert response.status == 200 and response.headers["Content-Length"] == "1000000"
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.read(), HANG_GUARD)
    assert (await agent_api.get(f"{API}/status")).status == 200  # the proxy carries on


async def test_sse_events_arrive_one_by_one_before_the_next_is_sent(agent_api, upstream: Upstream):
    gate: asyncio.Queue[int] = asyncio.Queue()
    upstream.agent.event_gate = gate
    response = await agent_api.get(f"{API}/events?count=5")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert "Content-Length" not in response.headers
    first = await read_event(response)
    assert first["event"] == "status_change"
    for seq in range(5):
        # The upstream sends event seq only now, and event seq+1 only after we have received this one.
        gate.put_nowait(seq)
        event = await read_event(response)
        assert event["event"] == "message_update"
        assert json.loads(event["data"])["id"] == seq
        assert gate.empty()
    response.close()


async def test_a_client_leaving_mid_stream_closes_the_upstream_connection(agent_api, upstream: Upstream):
    response = await agent_api.get(f"{API}/events?count=1")
    await read_event(response)
    await read_event(response)
    assert upstream.agent.streams_open == 1
    response.close()  # the client goes away while the upstream still holds the stream open
    await asyncio.wait_for(upstream.agent.stream_closed.wait(), HANG_GUARD)
    assert upstream.agent.streams_open == 0 and upstream.agent.streams_closed == 1


async def test_an_agent_that_is_not_ready_is_503_with_retry_after(agent_api, backend: MemoryBackend):
    backend.set_state("s1", "a1", status=AgentStatus.STARTING)
    response = await agent_api.get(f"{API}/status")
    error = await error_of(response, 503)
    assert error["code"] == "agent_not_ready" and "starting" in error["message"]
    assert response.headers["Retry-After"].isdigit()
    backend.set_state("s1", "a1", status=AgentStatus.READY, upstream=None)
    await error_of(await agent_api.get(f"{API}/status"), 503)


async def test_an_unreachable_upstream_is_502_json(agent_api, backend: MemoryBackend):
    backend.set_state("s1", "a1", upstream=f"http://127.0.0.1:{free_port()}")
    error = await error_of(await agent_api.get(f"{API}/status"), 502)
    assert error["code"] == "bad_gateway" and "a1" in error["message"]


async def test_unknown_agents_are_404_and_malformed_ids_400(agent_api):
    await error_of(await agent_api.get("/sessions/s1/agents/nobody/api/status"), 404)
    await error_of(await agent_api.get("/sessions/s2/agents/a1/api/status"), 404)
    error = await error_of(await agent_api.post("/sessions/s1/agents/Bad_Id/api/message", json={}), 400)
    assert error["field"] == "agent"
