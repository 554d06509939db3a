"""Start progress in local mode, with the real agentapi: the steps of a create in order up to
``ready`` (after the first message), replayed over HTTP to a late subscriber; a resume's own
steps; a crash loop ends the start with the agent's reason; and ``GET /events`` after a
reconnect with ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import json

from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.progress import StartProgress

from ..api.support import next_event, open_stream
from .support import spec, wait_for, wait_until

HANG_GUARD = 30.0


def names(record: StartProgress | None) -> list[str]:
    assert record is not None
    return [s.name for s in record.steps]


async def test_a_create_goes_through_every_step_to_ready(backend, settings):
    await backend.create(spec(settings, "p1", "echo", message="hello there"))
    record = backend.progress.get("p1")
    await wait_until(lambda: record.ended, HANG_GUARD, "the start to end")
    assert names(record) == ["process_started", "agentapi_answering", "restored", "first_message_delivered", "ready"]
    assert record.kind == "start"
    times = [s.at for s in record.steps]
    assert times == sorted(times) and all(s.seconds >= 0 for s in record.steps)
    assert "pid" in record.steps[0].message
    assert (await backend.get("s1", "p1")).status is AgentStatus.READY

    # A late subscriber over HTTP gets the whole start replayed, and the stream ends.
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        response = await client.get("/sessions/s1/agents/p1/progress")
        body = (await asyncio.wait_for(response.content.read(), HANG_GUARD)).decode()
    finally:
        await client.close()
    steps = [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]
    assert [s["step"] for s in steps] == names(record)
    assert [s["index"] for s in steps] == list(range(len(steps)))


async def test_a_resume_restores_its_conversation_step_by_step(backend, settings):
    await backend.create(spec(settings, "p2", "echo", message="remember me"))
    await wait_until(lambda: backend.progress.get("p2").ended, HANG_GUARD, "the start to end")
    await backend.suspend("s1", "p2")
    assert (await backend.get("s1", "p2")).status is AgentStatus.SUSPENDED
    await backend.resume("s1", "p2")
    record = backend.progress.get("p2")
    assert record is not None and record.kind == "resume"
    await wait_until(lambda: record.ended, HANG_GUARD, "the resume to end")
    # The first message is back with the conversation (agentapi does not send it again).
    assert names(record) == ["process_started", "agentapi_answering", "restored", "first_message_delivered", "ready"]
    assert "saved messages are back" in record.steps[2].message


async def test_a_crash_loop_ends_the_start_with_the_agents_reason(backend, settings):
    await backend.create(spec(settings, "p3", "crash"))
    state = await wait_for(backend, "p3", lambda s: s.status is AgentStatus.FAILED, timeout=HANG_GUARD)
    record = backend.progress.get("p3")
    assert record is not None and record.ended
    last = record.steps[-1]
    assert (last.name, last.reason, last.message) == ("failed", state.reason, state.message)
    assert state.reason == "CrashLoopBackOff"


async def test_a_ready_agent_that_crashes_starts_again_as_a_restart(backend, settings):
    await backend.create(spec(settings, "p4", "crash-twice"))
    state = await wait_for(backend, "p4", lambda s: s.status is AgentStatus.READY and s.restarts == 2,
                           timeout=HANG_GUARD)
    record = backend.progress.get("p4")
    assert record is not None and record.kind == "restart" and state.restarts == 2
    await wait_until(lambda: record.ended, HANG_GUARD, "the restart to end")
    assert names(record)[0] == "process_started" and names(record)[-1] == "ready"


async def test_events_after_a_reconnect_with_last_event_id_miss_nothing(backend, settings):
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        stream = await open_stream(client)
        await backend.create(spec(settings, "e1", "echo"))
        seen = [await next_event(stream)]
        stream.close()
        # The start goes on (starting, ready) while the client is away, and a second agent comes.
        await wait_for(backend, "e1", lambda s: s.status is AgentStatus.READY, timeout=HANG_GUARD)
        await backend.create(spec(settings, "e2", "echo"))
        await wait_for(backend, "e2", lambda s: s.status is AgentStatus.READY, timeout=HANG_GUARD)
        again = await open_stream(client, headers={"Last-Event-ID": seen[0][0]})
        while (seen[-1][2]["id"], seen[-1][2]["status"]) != ("e2", "ready"):
            seen.append(await next_event(again))
        again.close()
    finally:
        await client.close()
    epoch, first = seen[0][0].rsplit("-", 1)
    assert [i for i, _, _ in seen] == [f"{epoch}-{n}" for n in range(int(first), int(first) + len(seen))]
    statuses = [(d["id"], d["status"]) for _, _, d in seen]
    assert statuses[-1] == ("e2", "ready") and ("e1", "ready") in statuses
