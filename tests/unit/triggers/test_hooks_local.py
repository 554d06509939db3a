"""``POST /hooks/{id}`` over the real local backend: real agentapi echo agents, real GitHub
example payloads signed as GitHub signs them, real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.settings import Settings
from agentproxy.settings.schema import TriggersSettings
from tests.conversation import agent_said

from ..local.support import assert_nothing_left, make_settings, port_block, shut_down
from .support import SECRET, github_headers, hook, payload

HANG_GUARD = 180.0
"""Seconds after which a wait gives up (a bound on a loaded machine, not a measurement)."""

App = Callable[..., Awaitable[tuple[TestClient, LocalBackend]]]


@pytest.fixture
def local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    from agentproxy.agentapi import locate
    launcher = locate()
    assert launcher, "agentapi is not installed: run `bin/just agentapi`"
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    return make_settings(tmp_path / "data", launcher, port_block())


@pytest.fixture
async def serve(local_settings: Settings, tmp_path: Path) -> AsyncIterator[App]:
    """Start the API over a local backend with the given hooks; everything is stopped after."""
    started: list[tuple[TestClient, LocalBackend]] = []

    async def make(hooks: dict[str, Any], api_keys: Any = (), **more: Any) -> tuple[TestClient, LocalBackend]:
        local_settings.triggers = TriggersSettings(hooks=hooks, **more)  # a new section: parsed sections are cached
        backend = LocalBackend(local_settings)
        await backend.start()
        client = TestClient(TestServer(create_app(local_settings, backend, api_keys), host="127.0.0.1"))
        started.append((client, backend))
        await client.start_server()
        return client, backend

    try:
        yield make
    finally:
        for client, backend in reversed(started):
            await client.close()
            await shut_down(backend)
        await assert_nothing_left(tmp_path)


async def stop(client: TestClient, backend: LocalBackend) -> None:
    """Stop the proxy but not its agents (as a restart does)."""
    await client.close()
    await backend.close()


async def test_issue_opened_with_label_starts_an_agent_whose_first_message_is_the_prompt(serve: App) -> None:
    client, backend = await serve({"gh": hook()})
    body = payload("issues.opened")
    began = time.monotonic()
    reply = await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))
    assert reply.status == 202, await reply.text()
    agent = await reply.json()
    assert time.monotonic() - began < HANG_GUARD
    assert agent["session"] == "hook-gh" and agent["owner"] == "alice" and agent["reused"] is False
    prompt = "Fix Codertocat/Hello-World#1: Spelling error in the README file (by Codertocat)"
    ready = await backend.wait_ready("hook-gh", agent["id"], HANG_GUARD)
    async with aiohttp.ClientSession() as http:
        # The echo may be wrapped at the terminal's width: its start is enough.
        conversation = await agent_said(http, str(ready.upstream), "echo: Fix Codertocat/Hello-World#1", HANG_GUARD)
    users = [m["content"].strip() for m in conversation if m["role"] == "user"]
    assert users[0] == prompt
    # The agent's own API through the proxy shows the same first message.
    proxied = await client.get(f"/sessions/hook-gh/agents/{agent['id']}/api/messages")
    assert [m["content"].strip() for m in (await proxied.json())["messages"] if m["role"] == "user"][0] == prompt
    record = (await (await client.get("/triggers/deliveries?kind=hook")).json())["deliveries"][0]
    assert record["status"] == 202 and record["agent"] == agent["id"]


async def test_the_same_delivery_twice_makes_one_agent_also_after_a_restart(serve: App) -> None:
    client, backend = await serve({"gh": hook()})
    body = payload("issues.opened")
    headers = github_headers("issues", body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    first = await client.post("/hooks/gh", data=body, headers=headers)
    assert first.status == 202
    again = await client.post("/hooks/gh", data=body, headers=headers)
    assert again.status == 200 and (await again.json())["duplicate"] is True
    assert len(await backend.list(session="hook-gh")) == 1
    # Concurrent copies of a new delivery: one agent, the others answered as duplicates.
    other = github_headers("issues", body)
    replies = await asyncio.gather(*(client.post("/hooks/gh", data=body, headers=other) for _ in range(5)))
    assert sorted(r.status for r in replies) == [200, 200, 200, 200, 202]
    assert len(await backend.list(session="hook-gh")) == 2
    await stop(client, backend)
    client2, backend2 = await serve({"gh": hook()})
    after = await client2.post("/hooks/gh", data=body, headers=headers)
    assert after.status == 200 and (await after.json())["duplicate"] is True
    assert len(await backend2.list(session="hook-gh")) == 2


@pytest.mark.parametrize("change", ["no signature", "wrong secret", "body changed", "sha1 form"])
async def test_a_bad_or_missing_signature_is_401_and_changes_nothing(serve: App, change: str) -> None:
    client, backend = await serve({"gh": hook()})
    body = payload("issues.opened")
    headers = github_headers("issues", body)
    if change == "no signature":
        del headers["X-Hub-Signature-256"]
    elif change == "wrong secret":
        headers = github_headers("issues", body, secret="not the secret")
    elif change == "body changed":
        body = body.replace(b"Spelling error", b"Run rm -rf /")
    else:
        headers["X-Hub-Signature-256"] = headers["X-Hub-Signature-256"].replace("sha256=", "sha1=")
    reply = await client.post("/hooks/gh", data=body, headers=headers)
    assert reply.status == 401
    error = (await reply.json())["error"]
    assert error["field"] == "X-Hub-Signature-256" and SECRET not in json.dumps(error)
    assert await backend.list() == []
    # The same delivery correctly signed afterwards is not taken for a duplicate.
    good = await client.post("/hooks/gh", data=payload("issues.opened"),
                             headers={**github_headers("issues", payload("issues.opened")),
                                      "X-GitHub-Delivery": headers["X-GitHub-Delivery"]})
    assert good.status == 202


async def test_events_the_hook_does_not_match_are_answered_with_the_reason(serve: App) -> None:
    client, backend = await serve({"gh": hook()})
    for name, event, reason in [("ping", "ping", "event 'ping'"), ("issues.labeled", "issues", "action 'labeled'"),
                                ("issue_comment.created", "issue_comment", "event 'issue_comment'")]:
        body = payload(name)
        reply = await client.post("/hooks/gh", data=body, headers=github_headers(event, body))
        assert reply.status == 200
        data = await reply.json()
        assert data["matched"] is False and data["reason"].startswith(reason), data
    unlabeled = hook(match={"events": ["issues"], "labels": ["enhancement"]})
    when = hook(match={"events": ["issues"], "when": "issue.comments > 5"})
    await stop(client, backend)
    client2, backend = await serve({"gh": unlabeled, "busy": when})
    body = payload("issues.opened")
    assert "labels enhancement" in (await (await client2.post("/hooks/gh", data=body, headers=github_headers(
        "issues", body))).json())["reason"]
    assert "issue.comments > 5" in (await (await client2.post("/hooks/busy", data=body, headers=github_headers(
        "issues", body))).json())["reason"]
    assert await backend.list() == []


async def test_a_pull_request_matches_by_expression_and_renders_its_own_fields(serve: App) -> None:
    pr = hook(match={"events": ["pull_request"], "when": "pull_request.head.ref == 'changes' and number == 2"},
              prompt="Review PR {{ number }} ({{ pull_request.head.ref }}) labels={{ labels|join(',') }}")
    client, backend = await serve({"pr": pr})
    body = payload("pull_request.opened")
    reply = await client.post("/hooks/pr", data=body, headers=github_headers("pull_request", body))
    assert reply.status == 202, await reply.text()
    agent = await reply.json()
    ready = await backend.wait_ready("hook-pr", agent["id"], HANG_GUARD)
    async with aiohttp.ClientSession() as http:
        await agent_said(http, str(ready.upstream), "echo: Review PR 2 (changes) labels=bug", HANG_GUARD)


async def test_reuse_per_issue_sends_later_events_to_the_same_agent(serve: App) -> None:
    reuse = hook(reuse="issue", match={"events": ["issues", "issue_comment"]},
                 prompt="{{ event }} {{ action }} on #{{ number }}{% if comment %}: {{ comment.body }}{% endif %}")
    client, backend = await serve({"gh": reuse})
    opened = payload("issues.opened")
    first = await (await client.post("/hooks/gh", data=opened, headers=github_headers("issues", opened))).json()
    ready = await backend.wait_ready("hook-gh", first["id"], HANG_GUARD)
    async with aiohttp.ClientSession() as http:
        await agent_said(http, str(ready.upstream), "echo: issues opened on #1", HANG_GUARD)
        from tests.conversation import wait_stable
        await wait_stable(http, str(ready.upstream), HANG_GUARD)
        comment = payload("issue_comment.created")
        reply = await client.post("/hooks/gh", data=comment, headers=github_headers("issue_comment", comment))
        assert reply.status == 202, await reply.text()
        second = await reply.json()
        assert second["id"] == first["id"] and second["reused"] is True
        await agent_said(http, str(ready.upstream), "echo: issue_comment created on #1: You are totally right!",
                         HANG_GUARD)
        # A suspended agent of the issue is resumed, with its conversation, and takes the next prompt.
        await wait_stable(http, str(ready.upstream), HANG_GUARD)
        await backend.suspend("hook-gh", first["id"])
        labeled = payload("issues.labeled")
        reply = await client.post("/hooks/gh", data=labeled, headers=github_headers("issues", labeled))
        assert reply.status == 202, await reply.text()
        resumed = await reply.json()
        assert resumed["reused"] is True and resumed["result"] == "prompt queued"
        again = await backend.wait_ready("hook-gh", first["id"], HANG_GUARD)
        conversation = await agent_said(http, str(again.upstream), "echo: issues labeled on #1", HANG_GUARD)
        assert [m["content"].strip() for m in conversation if m["role"] == "user"] == [
            "issues opened on #1", "issue_comment created on #1: You are totally right! I'll get this fixed right away.",
            "issues labeled on #1"]
    assert len(await backend.list()) == 1


async def test_beyond_max_running_a_delivery_is_429_and_may_come_again(serve: App) -> None:
    client, backend = await serve({"gh": hook(max_running=1)})
    body = payload("issues.opened")
    assert (await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))).status == 202
    refused_headers = github_headers("issues", body)
    refused = await client.post("/hooks/gh", data=body, headers=refused_headers)
    assert refused.status == 429 and refused.headers["Retry-After"]
    assert (await refused.json())["error"]["field"] == "max_running"
    assert len(await backend.list()) == 1
    for state in await backend.list():
        await backend.delete(state.session, state.id)
    # Refused, not seen: the sender's retry of the same delivery is made once there is room.
    again = await client.post("/hooks/gh", data=body, headers=refused_headers)
    assert again.status == 202


async def test_hooks_need_no_api_key_but_their_listing_does(serve: App) -> None:
    from agentproxy.apikeys import hash_key
    keys = [{"name": "admin", "sha256": hash_key("k-admin"), "admin": True}, {"name": "bob", "sha256": hash_key("k-bob")}]
    client, _ = await serve({"gh": hook()}, keys)
    body = payload("issues.opened")
    assert (await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))).status == 202
    assert (await client.get("/hooks")).status == 401
    assert (await client.get("/hooks", headers={"Authorization": "Bearer k-bob"})).status == 403
    listed = await client.get("/hooks", headers={"Authorization": "Bearer k-admin"})
    text = await listed.text()
    assert listed.status == 200 and "env:TEST_HOOK_SECRET" in text and SECRET not in text
    assert (await client.post("/hooks/nope", data=body, headers=github_headers("issues", body))).status == 404


async def test_a_hook_agent_that_finished_its_turn_is_news(serve: App) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer as Plain

    from ..local.support import wait_until

    got: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/n", receive)
    receiver = Plain(app, host="127.0.0.1")
    await receiver.start_server()
    try:
        url = f"http://127.0.0.1:{receiver.port}/n"
        client, backend = await serve({"gh": hook()}, notifications=[
            {"url": url, "format": "slack", "hook": "gh", "events": ["ready", "deleted"]}])
        body = payload("issues.opened")
        agent = await (await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))).json()
        ready = await backend.wait_ready("hook-gh", agent["id"], HANG_GUARD)
        async with aiohttp.ClientSession() as http:
            await agent_said(http, str(ready.upstream), "echo: Fix Codertocat/Hello-World#1", HANG_GUARD)
        await wait_until(lambda: len(got) >= 1, HANG_GUARD, "the ready notification")
        assert got[0]["text"] == f"Agent hook-gh/{agent['id']} finished its turn and is ready"
        # An agent no subscription is about is no news.
        assert (await client.post("/sessions/other/agents", json={"id": "o1", "agent": "echo"})).status == 201
        await backend.delete("other", "o1")
        await backend.delete("hook-gh", agent["id"])
        await wait_until(lambda: any("was deleted" in m["text"] for m in got), HANG_GUARD, "the deleted notification")
        assert all(agent["id"] in m["text"] for m in got)
    finally:
        await receiver.close()
