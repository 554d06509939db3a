"""``GET /events``: status changes as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from agentproxy.backends.base import AgentStatus

from .memory_backend import MemoryBackend
from .test_agents_api import error_of

HANG_GUARD = 10.0


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


async def open_stream(api, path: str = "/events") -> aiohttp.ClientResponse:
    response = await api.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await next_line(response) == ": connected\n"
    assert await next_line(response) == "\n"
    return response


async def test_added_modified_and_deleted_events(api, backend: MemoryBackend):
    stream = await open_stream(api)
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    added = await next_status_event(stream)
    assert (added["event"], added["id"], added["session"], added["status"]) == ("added", "a1", "s1", "ready")
    assert added["url"] == "/sessions/s1/agents/a1/api/"
    backend.set_state("s1", "a1", status=AgentStatus.FAILED, reason="OOMKilled")
    modified = await next_status_event(stream)
    assert (modified["event"], modified["status"], modified["reason"]) == ("modified", "failed", "OOMKilled")
    await api.delete("/sessions/s1/agents/a1")
    deleted = await next_status_event(stream)
    assert (deleted["event"], deleted["id"]) == ("deleted", "a1")
    stream.close()


async def test_session_filter(api):
    stream = await open_stream(api, "/events?session=s2")
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    await api.post("/sessions/s2/agents", json={"id": "b1"})
    event = await next_status_event(stream)
    assert (event["id"], event["session"]) == ("b1", "s2")
    stream.close()
    await error_of(await api.get("/events?session=bad%20id"), 400)


async def test_idle_streams_get_heartbeat_comments(make_api):
    api = await make_api(heartbeat_interval=0.01)
    stream = await open_stream(api)
    assert await next_line(stream) == ": heartbeat\n"
    assert await next_line(stream) == "\n"
    stream.close()


async def test_a_closed_stream_unsubscribes_from_the_backend(api, backend: MemoryBackend):
    stream = await open_stream(api)
    assert backend.subscribers == 1
    stream.close()
    for _ in range(int(HANG_GUARD / 0.01)):
        if backend.subscribers == 0:
            break
        await asyncio.sleep(0.01)
    assert backend.subscribers == 0


async def test_the_stream_ends_when_the_backend_stops_sending(api, backend: MemoryBackend):
    stream = await open_stream(api)
    await backend.close()
    rest = await asyncio.wait_for(stream.content.read(), HANG_GUARD)
    assert rest == b""
