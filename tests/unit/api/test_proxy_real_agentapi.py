"""The reverse proxy in front of the real agentapi (wrapping the echo demo agent).

What the proxy promises, shown against the program it really fronts: agentapi's
status, messages and message pass through; its Host check is satisfied (it
refuses any Host but localhost-style ones); a 10 MB upload streams into it; and
its event stream reaches the client event by event, including an update caused
by a message sent to agentapi directly, not through the proxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from agentproxy.agentapi import locate
from agentproxy.launch import agent_launch
from agentproxy.settings import Settings
from agentproxy.spec import build_spec
from testenv.ports import free_port
from tests.conversation import AGENTAPI_HOST, agent_said, exchanges, say, wait_answering, wait_stable

from .memory_backend import MemoryBackend
from .support import API, read_event

HANG_GUARD = 20.0
"""Seconds after which a test that waits for something gives up (a bound, not a measurement)."""


@pytest.fixture
async def agentapi(settings: Settings, tmp_path: Path) -> AsyncIterator[str]:
    """A real agentapi around the echo demo, started as agentproxy starts it; its base URL."""
    binary = locate()
    assert binary, "agentapi is not installed: run `bin/just agentapi`"
    port = free_port()
    spec = build_spec(settings, "s1", "a1", "echo")
    launch = agent_launch(spec, port=port, work_dir=str(tmp_path), program=binary,
                          command=[sys.executable, "-m", "agentproxy.demo_agent"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
    proc = subprocess.Popen(launch.argv, env={**env, **launch.env}, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as client:
            await wait_answering(client, base, HANG_GUARD)
        yield base
    finally:
        proc.terminate()  # agentapi stops its agent
        try:
            proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


@pytest.fixture
async def proxied(make_api, agentapi: str):
    """The API with one ready agent, a1 in session s1, whose upstream is the real agentapi."""
    client = await make_api(backend_=MemoryBackend(upstream=agentapi))
    assert (await client.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    return client


def route(client) -> str:
    return f"http://127.0.0.1:{client.port}{API}"


async def test_status_messages_and_message_pass_through(proxied, agentapi):
    async with aiohttp.ClientSession() as http:
        status = await (await http.get(f"{route(proxied)}/status")).json()
        assert status["agent_type"] == "custom" and status["status"] in ("running", "stable")
        conversation = await say(http, route(proxied), "hello through the proxy")
        assert exchanges(conversation) == [("user", "hello through the proxy"),
                                           ("agent", "echo: hello through the proxy")]
        # The same conversation, asked directly.
        direct = await (await http.get(f"{agentapi}/messages", headers=AGENTAPI_HOST)).json()
        assert direct == {**direct, "messages": conversation}
        # agentapi's own validation errors pass unchanged.
        async with http.post(f"{route(proxied)}/message", json={"content": 1}) as rejected:
            assert rejected.status == 422
            assert (await rejected.json())["title"] == "Unprocessable Entity"


async def test_the_host_header_agentapi_insists_on_is_set_by_the_proxy(proxied, agentapi):
    async with aiohttp.ClientSession() as http:
        # Asked directly with the Host a client of the proxy uses, agentapi refuses.
        async with http.get(f"{agentapi}/status", headers={"Host": "agents.example"}) as refused:
            assert refused.status == 400 and "Invalid host header" in await refused.text()
        async with http.get(f"{route(proxied)}/status", headers={"Host": "agents.example"}) as passed:
            assert passed.status == 200


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_10_mb_upload_reaches_agentapi(proxied, with_length: bool):
    data = os.urandom(10 * 1024 * 1024 - 4096)  # agentapi's limit is 10 MB, multipart framing included
    boundary = "agentproxy-test-boundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body():
        yield head
        for offset in range(0, len(data), 1024 * 1024):
            yield data[offset:offset + 1024 * 1024]
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if with_length:
        headers["Content-Length"] = str(len(head) + len(data) + len(tail))
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{route(proxied)}/upload", data=body(), headers=headers) as response:
            assert response.status == 200, await response.text()
            result = await response.json()
    assert result["ok"] is True
    # agentapi wrote the file where it says (a local path: it runs on this machine).
    stored = Path(result["filePath"])
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


async def next_event(response: aiohttp.ClientResponse) -> tuple[str, dict]:
    """The next Server-Sent Event of ``response``: its name and its data."""
    fields = await read_event(response)
    return fields.get("event", "message"), json.loads(fields["data"])


async def test_events_stream_through_event_by_event(proxied, agentapi):
    async with aiohttp.ClientSession() as http:
        await agent_said(http, agentapi, "echo agent")  # the greeting is on the screen
        await wait_stable(http, agentapi)
        async with http.get(f"{route(proxied)}/events") as stream:
            assert stream.status == 200
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert "Content-Length" not in stream.headers
            # On connect: every message so far, then the status.
            name, greeting = await next_event(stream)
            assert (name, greeting["id"], greeting["role"]) == ("message_update", 0, "agent")
            assert await next_event(stream) == ("status_change", {"status": "stable", "agent_type": "custom"})
            # A message sent to agentapi directly shows up through the proxy as it happens.
            async with http.post(f"{agentapi}/message", headers=AGENTAPI_HOST,
                                 json={"content": "sent directly", "type": "user"}) as sent:
                assert sent.status == 200
            seen: list[tuple[str, dict]] = []
            while not any(n == "message_update" and d["role"] == "agent" and "echo: sent directly" in d["message"]
                          for n, d in seen):
                seen.append(await next_event(stream))
            assert ("status_change", {"status": "running", "agent_type": "custom"}) in seen
            user = [d for n, d in seen if n == "message_update" and d["role"] == "user"]
            assert [u["message"] for u in user] == ["sent directly"]
            # ...and the agent settles again, still on the same stream.
            while seen[-1] != ("status_change", {"status": "stable", "agent_type": "custom"}):
                seen.append(await next_event(stream))
