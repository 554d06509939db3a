"""Hostile bytes at ``POST /hooks/{id}``, sent as is over raw sockets, on the fast path (as
``serve`` runs the app) and on aiohttp's server: a signature that is not ASCII, a chunked body
past ``server.max_body``, a lying Content-Length, a body that is not JSON but correctly signed,
a hook whose secret is missing. Each is a 4xx (or 503) JSON error, nothing is made, and no
traceback reaches the log. The backend is the HTTP tests' in-memory one: nothing needs to run."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.api.logfilter import quiet_malformed_requests
from agentproxy.settings import Settings
from agentproxy.settings.schema import TriggersSettings

from ..api.memory_backend import MemoryBackend
from ..api.raw_client import Raw
from ..api.support import FastPathTestServer
from .support import SECRET, hook


@pytest.fixture(params=["fast-path", "aiohttp"])
async def api(request: pytest.FixtureRequest, settings: Settings, tmp_path,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[TestClient, MemoryBackend]]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings.local_mode.data_dir = str(tmp_path / "data")
    settings.server.max_body = 4096
    settings.triggers = TriggersSettings(hooks={"gh": hook(match={}), "nosecret": hook(secret_env="UNSET_SECRET")})
    quiet_malformed_requests()
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    app = create_app(settings, backend)
    server = FastPathTestServer(app, host="127.0.0.1") if request.param == "fast-path" \
        else TestServer(app, host="127.0.0.1")
    client = TestClient(server)
    await client.start_server()
    try:
        yield client, backend
    finally:
        await client.close()


async def exchange(client: TestClient, request: bytes) -> tuple[int, dict[str, str], bytes]:
    raw = await Raw.open(client.port)
    try:
        raw.send(request)
        return await raw.answer()
    finally:
        await raw.close()


def post(body: bytes, *headers: bytes, path: bytes = b"/hooks/gh", length: int | None = None) -> bytes:
    lines = [b"POST " + path + b" HTTP/1.1", b"Host: proxy.test", b"Content-Type: application/json",
             b"X-GitHub-Event: issues", *headers]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def signature(body: bytes) -> bytes:
    return b"X-Hub-Signature-256: sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest().encode()


async def test_hostile_requests(api, caplog: pytest.LogCaptureFixture) -> None:
    client, backend = api
    caplog.set_level(logging.INFO)
    body = b'{"action": "opened", "issue": {"number": 1, "title": "t"}}'
    cases = [
        (post(body, b"X-Hub-Signature-256: sha256=\xff\xfe" + b"0" * 62, length=len(body)), 401),
        (post(body, b"X-Hub-Signature-256: " + b"a" * 3000, length=len(body)), 401),
        (post(b"not json at all", signature(b"not json at all"), length=15), 400),
        (post(b"[1, 2]", signature(b"[1, 2]"), length=6), 400),
        (post(b"x" * 5000, signature(b"x" * 5000), length=5000), 413),
        (post(body, signature(body), path=b"/hooks/nosecret", length=len(body)), 503),
        (post(body, signature(body), path=b"/hooks/%ff%00", length=len(body)), 404),
    ]
    chunk = b"y" * 1000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    cases.append((post(chunked, signature(chunk * 6), b"Transfer-Encoding: chunked"), 413))
    for request, status in cases:
        got, headers, answer = await exchange(client, request)
        assert got == status, (request[:120], answer)
        error = json.loads(answer)["error"]
        assert error["message"] and SECRET not in answer.decode("utf-8", "replace")
    assert backend.agents == {}
    assert "Traceback" not in caplog.text and SECRET not in caplog.text
    # A correct delivery over the same raw path is taken.
    got, _, answer = await exchange(client, post(body, signature(body), b"X-GitHub-Delivery: d-1", length=len(body)))
    assert got == 202, answer
    assert len(backend.agents) == 1


async def test_the_owner_quota_applies_to_a_hook_agents(settings: Settings, tmp_path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from agentproxy.settings.schema import TeamsSettings

    from .support import github_headers, payload

    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    settings.local_mode.data_dir = str(tmp_path / "data")
    settings.teams = TeamsSettings(quotas={"users": {"alice": {"agents": 1}}}, audit_log=str(tmp_path / "audit.log"))
    settings.triggers = TriggersSettings(hooks={"gh": hook()})
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        body = payload("issues.opened")
        first = await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))
        assert first.status == 202 and (await first.json())["owner"] == "alice"
        refused = await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))
        assert refused.status == 429
        assert (await refused.json())["error"]["field"] == "teams.quotas.users.alice.agents"
        assert len(backend.agents) == 1
        metrics = await (await client.get("/metrics")).text()
        assert 'agentproxy_trigger_deliveries_total{kind="hook",name="gh",outcome="202"} 1.0' in metrics
        assert 'agentproxy_trigger_deliveries_total{kind="hook",name="gh",outcome="429"} 1.0' in metrics
        audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
        assert [(r["action"], r["status"], r["result"]) for r in audit if r["action"] == "hook.delivery"] == [
            ("hook.delivery", 202, "ok"), ("hook.delivery", 429, "refused")]
        assert audit[0]["agent"] == (await first.json())["id"]
    finally:
        await client.close()
