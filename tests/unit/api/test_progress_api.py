"""``GET /sessions/{s}/agents/{a}/progress``: a start's steps as Server-Sent Events, over the
in-memory backend (which tells no steps of its own: only the end of each start)."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from agentproxy.backends.base import AgentStatus

from .memory_backend import MemoryBackend
from .support import ALICE_KEY, BOB_KEY, KEYS, bearer, error_of

HANG_GUARD = 10.0
PROGRESS = "/sessions/s1/agents/a1/progress"


async def next_line(response: aiohttp.ClientResponse) -> str:
    return (await asyncio.wait_for(response.content.readline(), HANG_GUARD)).decode()


async def next_step(response: aiohttp.ClientResponse) -> dict | None:
    """The data of the next ``step`` event (comments skipped), None when the stream ended."""
    event_id = None
    while True:
        line = await next_line(response)
        if not line:
            return None
        if line.startswith("id: "):
            event_id = line[4:].strip()
        elif line.startswith("event: "):
            assert line == "event: step\n"
        elif line.startswith("data: "):
            assert await next_line(response) == "\n"
            data = json.loads(line[len("data: "):])
            assert str(data["index"]) == event_id
            return data


async def open_progress(client, path: str = PROGRESS, **kwargs) -> aiohttp.ClientResponse:
    response = await client.get(path, **kwargs)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await next_line(response) == ": connected\n"
    assert await next_line(response) == "\n"
    return response


async def test_a_start_streams_live_and_ends_with_ready(make_api):
    backend = MemoryBackend()  # agents stay pending until moved
    api = await make_api(backend_=backend)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    stream = await open_progress(api)
    backend.set_state("s1", "a1", status=AgentStatus.STARTING, reason="Starting")
    backend.set_state("s1", "a1", status=AgentStatus.READY, upstream="http://127.0.0.1:1")
    step = await next_step(stream)
    assert step is not None
    assert (step["step"], step["id"], step["session"], step["kind"], step["index"]) == ("ready", "a1", "s1",
                                                                                        "start", 0)
    assert await next_step(stream) is None  # the stream ends after the last step
    # A late subscriber gets the same start replayed, and the stream ends at once.
    again = await open_progress(api)
    replayed = await next_step(again)
    assert replayed is not None and replayed["step"] == "ready"
    assert await next_step(again) is None
    metrics = await (await api.get("/metrics")).text()
    assert 'agentproxy_agent_start_step_seconds_count{kind="start",step="ready"} 1.0' in metrics


async def test_a_failed_start_ends_with_the_agents_reason(make_api):
    backend = MemoryBackend()
    api = await make_api(backend_=backend)
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    stream = await open_progress(api)
    backend.set_state("s1", "a1", status=AgentStatus.FAILED, reason="Unschedulable", message="Insufficient cpu")
    step = await next_step(stream)
    assert step is not None
    assert (step["step"], step["reason"], step["message"]) == ("failed", "Unschedulable", "Insufficient cpu")
    assert await next_step(stream) is None
    state = await (await api.get("/sessions/s1/agents/a1")).json()
    assert (state["reason"], state["message"]) == (step["reason"], step["message"])


async def test_a_resume_is_a_start_of_its_own(make_api):
    backend = MemoryBackend()
    api = await make_api(backend_=backend)
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    backend.set_state("s1", "a1", status=AgentStatus.READY)
    assert (await api.post("/sessions/s1/agents/a1/suspend")).status == 200
    assert (await api.post("/sessions/s1/agents/a1/resume")).status == 200  # pending again
    stream = await open_progress(api)
    backend.set_state("s1", "a1", status=AgentStatus.READY)
    step = await next_step(stream)
    assert step is not None and (step["kind"], step["step"]) == ("resume", "ready")


async def test_a_deleted_agent_ends_its_stream(make_api):
    backend = MemoryBackend()
    api = await make_api(backend_=backend)
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    stream = await open_progress(api)
    assert (await api.delete("/sessions/s1/agents/a1")).status == 200
    step = await next_step(stream)
    assert step is not None and (step["step"], step["reason"]) == ("stopped", "Deleted")
    assert await next_step(stream) is None


async def test_idle_streams_get_heartbeats(make_api):
    backend = MemoryBackend()
    api = await make_api(backend_=backend, heartbeat_interval=0.01)
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    stream = await open_progress(api)
    assert await next_line(stream) == ": heartbeat\n"
    stream.close()


async def test_progress_is_owner_scoped(make_api):
    backend = MemoryBackend()
    api = await make_api(KEYS, backend_=backend)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=bearer(ALICE_KEY))).status == 201
    await error_of(await api.get(PROGRESS, headers=bearer(BOB_KEY)), 404)
    await error_of(await api.get(PROGRESS), 401)
    await error_of(await api.get("/sessions/s1/agents/bad%20id/progress", headers=bearer(ALICE_KEY)), 400)
    stream = await open_progress(api, headers=bearer(ALICE_KEY))
    stream.close()
