"""Notifications out: to a real aiohttp receiver on 127.0.0.1, through the app's notifier.

The agents are those of the in-memory backend of the HTTP tests (the real base class's events;
nothing runs): a real agent cannot be made to wait for input, fail and recover ten times in a
second on demand, which is what the debounce is about."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.suspension import AgentActivity
from agentproxy.settings import Settings
from agentproxy.settings.schema import TriggersSettings
from agentproxy.triggers.service import TRIGGERS
from agentproxy.triggers.signatures import verify_notification

from ..api.memory_backend import MemoryBackend
from ..local.support import wait_until

SECRET = "notify-secret"
HANG_GUARD = 60.0


class Receiver:
    """A webhook receiver that answers 500 to the first ``fail`` requests of each message."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.tries: list[tuple[bytes, dict[str, str]]] = []
        self.accepted: list[tuple[bytes, dict[str, str]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.tries.append((body, dict(request.headers)))
        if len(self.tries) - len(self.accepted) * (self.fail + 1) <= self.fail:
            return web.Response(status=500, text="not now")
        self.accepted.append((body, dict(request.headers)))
        return web.Response(text="ok")


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    target = Receiver(fail=2)
    app = web.Application()
    app.router.add_post("/in", target.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield target, f"http://127.0.0.1:{server.port}/in"
    finally:
        await server.close()


async def serve(settings: Settings, tmp_path: Path, notifications: list[dict[str, Any]],
                **delivery: Any) -> tuple[TestClient, MemoryBackend]:
    settings.local_mode.data_dir = str(tmp_path / "data")
    settings.triggers = TriggersSettings(notifications=notifications,
                                         delivery={"backoff": "50ms", "debounce": "1h", **delivery})
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    return client, backend


async def test_a_signed_notification_arrives_at_the_third_try(settings, tmp_path, receiver, monkeypatch) -> None:
    target, url = receiver
    monkeypatch.setenv("NOTIFY_SECRET", SECRET)
    client, backend = await serve(settings, tmp_path, [{"name": "alice", "url": url, "format": "signed",
                                                       "secret_env": "NOTIFY_SECRET", "owner": "alice",
                                                       "events": ["waiting_input", "failed"]}])
    try:
        assert (await client.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        backend.agents["a1"] = dataclasses.replace(backend.agents["a1"],
                                                   spec=dataclasses.replace(backend.agents["a1"].spec, owner="alice"))
        began = time.monotonic()
        backend.set_state("s1", "a1", question="Allow Bash(rm -rf build)?")
        await wait_until(lambda: len(target.accepted) == 1, HANG_GUARD, "the notification")
        assert len(target.tries) == 3 and time.monotonic() - began < HANG_GUARD
        body, headers = target.accepted[0]
        assert verify_notification(SECRET.encode(), body, headers, now=time.time())
        assert not verify_notification(b"another secret", body, headers, now=time.time())
        assert not verify_notification(SECRET.encode(), body, headers, now=time.time() + 3600)  # a replay, later
        message = json.loads(body)
        assert message["type"] == "waiting_input" and message["agent"]["id"] == "a1"
        assert message["agent"]["question"] == "Allow Bash(rm -rf build)?"
        record = (await (await client.get("/triggers/deliveries?kind=notification")).json())["deliveries"][0]
        assert record["attempts"] == 3 and record["status"] == 200 and url not in json.dumps(record)
    finally:
        await client.close()


async def test_a_flapping_agent_sends_one_message(settings, tmp_path, receiver) -> None:
    target, url = receiver
    target.fail = 0
    client, backend = await serve(settings, tmp_path, [{"name": "ops", "url": url, "format": "slack"}])
    try:
        assert (await client.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        for _ in range(10):
            backend.set_state("s1", "a1", status=AgentStatus.FAILED, reason="CrashLoopBackOff")
            backend.set_state("s1", "a1", status=AgentStatus.READY, reason=None)
        service = client.app[TRIGGERS]
        await wait_until(lambda: service.notifier.debounce.held_total == 9, HANG_GUARD, "every flap seen")
        await service.notifier.idle()
        assert len(target.accepted) == 1
        assert json.loads(target.accepted[0][0])["text"].startswith("Agent s1/a1 failed")
        # Another agent is news of its own.
        assert (await client.post("/sessions/s1/agents", json={"id": "a2"})).status == 201
        backend.set_state("s1", "a2", status=AgentStatus.FAILED, reason="CrashLoopBackOff")
        await wait_until(lambda: len(target.accepted) == 2, HANG_GUARD, "the second notification")
    finally:
        await client.close()


async def test_ready_after_a_turn_and_deleted(settings, tmp_path, receiver) -> None:
    target, url = receiver
    target.fail = 0
    client, backend = await serve(settings, tmp_path, [{"url": url, "format": "slack", "events": ["ready", "deleted"]}],
                                  debounce="0s")
    try:
        assert (await client.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        await asyncio.sleep(0)
        # The in-memory backend dates its agents in the past: the first look only notes where the
        # agent is (as for an agent that was there before the proxy started), the next turn is news.
        notifier = client.app[TRIGGERS].notifier
        backend.activities["a1"] = AgentActivity("stable", datetime(2026, 1, 1, 12, 0, tzinfo=UTC))
        await wait_until(lambda: "a1" in notifier.turns.seen, HANG_GUARD, "the first look")
        assert target.accepted == []
        backend.activities["a1"] = AgentActivity("stable", datetime(2026, 1, 1, 12, 5, tzinfo=UTC))
        await wait_until(lambda: len(target.accepted) == 1, HANG_GUARD, "the ready notification")
        assert "finished its turn" in json.loads(target.accepted[0][0])["text"]
        assert (await client.delete("/sessions/s1/agents/a1")).status == 200
        await wait_until(lambda: len(target.accepted) == 2, HANG_GUARD, "the deleted notification")
        assert "was deleted" in json.loads(target.accepted[1][0])["text"]
    finally:
        await client.close()


async def test_what_never_arrives_is_a_dead_letter(settings, tmp_path, receiver) -> None:
    target, url = receiver
    target.fail = 1000
    client, backend = await serve(settings, tmp_path, [{"name": "ops", "url": url, "format": "slack"}],
                                  attempts=3)
    try:
        assert (await client.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
        backend.set_state("s1", "a1", status=AgentStatus.FAILED, reason="CrashLoopBackOff")
        notifier = client.app[TRIGGERS].notifier
        await wait_until(lambda: len(notifier.dead) == 1, HANG_GUARD, "the dead letter")
        letters = (await (await client.get("/triggers/dead-letters")).json())["dead_letters"]
        assert len(target.tries) == 3 and len(letters) == 1
        assert letters[0]["name"] == "ops" and letters[0]["error"] == "answered 500" and letters[0]["attempts"] == 3
        metrics = await (await client.get("/metrics")).text()
        assert 'agentproxy_trigger_deliveries_total{kind="notification",name="ops",outcome="dead"} 1.0' in metrics
    finally:
        await client.close()


def test_turns_and_debounce_rules() -> None:
    from agentproxy.triggers.notify import Debounce, TurnWatch

    turns = TurnWatch()
    t1, t2 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC), datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    assert not turns.observe("a", "running", t1)          # still working
    assert turns.observe("a", "stable", t1)               # a new agent's first turn done
    assert not turns.observe("a", "stable", t1)           # nothing new since
    assert turns.observe("a", "stable", t2)               # another turn
    assert not turns.observe("old", "stable", t1, fresh=False)  # there before the proxy: noted only
    assert turns.observe("old", "stable", t2, fresh=False)
    debounce = Debounce(30)
    assert debounce.admit("k", 0.0) == 0
    assert debounce.admit("k", 10.0) is None and debounce.admit("k", 20.0) is None
    assert debounce.admit("k", 31.0) == 2 and debounce.held_total == 2
    debounce.forget_before(100.0)
    assert debounce.admit("k", 100.0) == 0
