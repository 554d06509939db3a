"""``GET /events``: status changes as Server-Sent Events."""

from __future__ import annotations

import asyncio

from agentproxy.backends.base import AgentStatus

from .memory_backend import MemoryBackend
from .support import ALICE_KEY, BOB_KEY, KEYS, bearer, error_of, next_event, next_line, next_status_event, open_stream

HANG_GUARD = 10.0


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


async def test_a_reconnect_with_last_event_id_misses_nothing(api, backend: MemoryBackend):
    stream = await open_stream(api)
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    first_id, name, data = await next_event(stream)
    assert name == "status" and data["id"] == "a1" and first_id
    stream.close()
    # Changes while the client is away.
    await api.post("/sessions/s1/agents", json={"id": "a2"})
    backend.set_state("s1", "a1", status=AgentStatus.FAILED, reason="OOMKilled")
    await api.delete("/sessions/s1/agents/a2")
    again = await open_stream(api, headers={"Last-Event-ID": first_id})
    missed = [await next_event(again) for _ in range(3)]
    assert [(d["id"], d["event"]) for _, _, d in missed] == [("a2", "added"), ("a1", "modified"), ("a2", "deleted")]
    ids = [first_id] + [i for i, _, _ in missed]
    epoch, first = first_id.rsplit("-", 1)
    assert ids == [f"{epoch}-{n}" for n in range(int(first), int(first) + 4)]  # consecutive: none missed
    # Then live, without repeating anything.
    await api.post("/sessions/s1/agents", json={"id": "a3"})
    live_id, _, data = await next_event(again)
    assert data["id"] == "a3" and live_id not in ids
    again.close()


async def test_an_id_out_of_the_window_gets_a_resync(api, backend: MemoryBackend):
    for bad in ("0000-1", "not an id", "x" * 300):
        stream = await open_stream(api, headers={"Last-Event-ID": bad})
        _, name, data = await next_event(stream)
        assert name == "resync" and "list the agents again" in data["message"]
        assert len(data["last_event_id"]) <= 200
        await api.post("/sessions/s1/agents", json={"id": "r1"})
        _, name, data = await next_event(stream)  # live events follow the resync
        assert (name, data["id"]) == ("status", "r1")
        await api.delete("/sessions/s1/agents/r1")
        stream.close()
    backend.event_log.capacity = 2
    stream = await open_stream(api)
    await api.post("/sessions/s1/agents", json={"id": "w1"})
    old_id, _, _ = await next_event(stream)
    stream.close()
    for n in range(3):
        await api.post("/sessions/s1/agents", json={"id": f"w{n + 2}"})
    again = await open_stream(api, headers={"Last-Event-ID": old_id})
    _, name, _ = await next_event(again)
    assert name == "resync"
    again.close()


async def test_replay_is_owner_scoped(make_api, backend: MemoryBackend):
    api = await make_api(KEYS)
    stream = await open_stream(api, headers=bearer(BOB_KEY))
    await api.post("/sessions/b/agents", json={"id": "b1"}, headers=bearer(BOB_KEY))
    bob_id, _, _ = await next_event(stream)
    stream.close()
    await api.post("/sessions/a/agents", json={"id": "a1"}, headers=bearer(ALICE_KEY))
    await api.post("/sessions/b/agents", json={"id": "b2"}, headers=bearer(BOB_KEY))
    again = await open_stream(api, headers={**bearer(BOB_KEY), "Last-Event-ID": bob_id})
    _, _, data = await next_event(again)
    assert data["id"] == "b2"  # alice's agent is not replayed to bob
    again.close()
