"""Hooks defined at run time: ``PUT``, ``GET`` and ``DELETE /hooks/{id}`` over the real local
backend, real echo agents and real HTTP on 127.0.0.1; deliveries signed as GitHub signs them."""

from __future__ import annotations

import json
import logging
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.apikeys import hash_key
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.settings import Settings
from agentproxy.settings.schema import TriggersSettings
from agentproxy.triggers.defined import id_problem
from agentproxy.triggers.hookbook import HookBook
from agentproxy.triggers.hookstore import LocalHookStore

from ..local.support import assert_nothing_left, make_settings, port_block, shut_down
from .support import SECRET, github_headers, hook, payload

HANG_GUARD = 180.0
"""Seconds after which a wait gives up (a bound on a loaded machine, not a measurement)."""

STORED_SECRET = "s3cr3t-value-never-shown-7f1c"
KEYS = [{"name": "admin", "sha256": hash_key("k-admin"), "admin": True}, {"name": "bob", "sha256": hash_key("k-bob")}]
ADMIN = {"Authorization": "Bearer k-admin"}
BOB = {"Authorization": "Bearer k-bob"}

App = Callable[..., Awaitable[tuple[TestClient, LocalBackend]]]


def defined(**fields: Any) -> dict[str, Any]:
    """The body of a PUT: the settings' example hook with its secret given as a value."""
    body = hook()
    body.pop("secret_env")
    if not {"secret_env", "secret", "secret_value"} & fields.keys():
        body["secret_value"] = STORED_SECRET
    body.update(fields)
    return body


@pytest.fixture
def local_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    from agentproxy.agentapi import locate
    launcher = locate()
    assert launcher, "agentapi is not installed: run `bin/just agentapi`"
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    return make_settings(tmp_path / "data", launcher, port_block())


@pytest.fixture
async def serve(local_settings: Settings, tmp_path: Path) -> AsyncIterator[App]:
    """Start the API over a local backend with the given hooks in its settings."""
    started: list[tuple[TestClient, LocalBackend]] = []

    async def make(hooks: dict[str, Any], api_keys: Any = KEYS) -> tuple[TestClient, LocalBackend]:
        local_settings.triggers = TriggersSettings(hooks=hooks)  # a new section: parsed sections are cached
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


async def test_only_admins_define_read_and_delete_hooks(serve: App) -> None:
    client, _ = await serve({})
    for method in ("PUT", "GET", "DELETE"):
        body = defined() if method == "PUT" else None
        assert (await client.request(method, "/hooks/gh", json=body)).status == 401
        refused = await client.request(method, "/hooks/gh", json=body, headers=BOB)
        assert refused.status == 403, method
        assert (await refused.json())["error"]["field"] == "Authorization"
    assert (await client.get("/hooks/gh", headers=ADMIN)).status == 404  # bob's PUT defined nothing
    made = await client.put("/hooks/gh", json=defined(), headers=ADMIN)
    assert made.status == 201, await made.text()
    shown = await made.json()
    assert shown["id"] == "gh" and shown["source"] == "api" and shown["secret"] == "stored"
    replaced = await client.put("/hooks/gh", json=defined(max_running=3), headers=ADMIN)
    assert replaced.status == 200 and (await replaced.json())["max_running"] == 3
    got = await client.get("/hooks/gh", headers=ADMIN)
    assert got.status == 200 and (await got.json())["max_running"] == 3
    assert (await client.delete("/hooks/gh", headers=BOB)).status == 403
    assert (await client.delete("/hooks/gh", headers=ADMIN)).status == 204
    assert (await client.get("/hooks/gh", headers=ADMIN)).status == 404
    assert (await client.delete("/hooks/gh", headers=ADMIN)).status == 404


BAD = [
    ({"prompt": None}, "prompt", "Jinja2 template"),
    ({"prompt": "{{ issue.__class__ }}"}, "prompt", "reaches Python internals"),
    ({"prompt": "{% if %}"}, "prompt", "does not compile"),
    ({"match": {"events": "issues", "when": "x.__globals__"}}, "match.when", "reaches Python internals"),
    ({"match": {"events": [1]}}, "match.events", "list of non-empty strings"),
    ({"match": {"colour": ["red"]}}, "match.colour", "is not a match field"),
    ({"scheme": "sha1"}, "scheme", "must be one of github, hmac-sha256"),
    ({"owner": "bad owner!"}, "owner", "the user it runs as"),
    ({"agent": "nope"}, "agent", "configured agent types"),
    ({"max_running": -1}, "max_running", "0 (no limit) or more"),
    ({"session": "Not A Session"}, "session", ""),
    ({"header": "bad header:"}, "header", "HTTP header name"),
    ({"colour": "red"}, "colour", "is not a hook field"),
    ({"secret_file": "/etc/hostname"}, "secret_file", "not shared by replicas"),
    ({"secret_env": "TEST_HOOK_SECRET"}, "secret_value", "not secret_env and secret_value"),
    ({"secret_value": ""}, "secret_value", "1 to 4096 characters"),
    ({"secret_value": None}, "secret_value", "a secret is required"),
    ({"secret_value": None, "secret": "plain-value"}, "secret", "env:NAME"),
    ({"secret_value": None, "secret_env": "1BAD"}, "secret_env", "environment variable"),
]


@pytest.mark.parametrize(("change", "field", "rule"), BAD, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD)])
async def test_a_bad_definition_is_400_naming_the_field_and_changes_nothing(
        serve: App, change: dict[str, Any], field: str, rule: str) -> None:
    client, _ = await serve({})
    assert (await client.put("/hooks/gh", json=defined(), headers=ADMIN)).status == 201
    before = await (await client.get("/hooks/gh", headers=ADMIN)).json()
    body = {k: v for k, v in {**defined(), **change}.items() if v is not None}
    refused = await client.put("/hooks/gh", json=body, headers=ADMIN)
    assert refused.status == 400, await refused.text()
    error = (await refused.json())["error"]
    assert error["field"] == field and rule in error["message"] and error["message"].startswith(f"{field}: ")
    assert STORED_SECRET not in json.dumps(error)
    assert await (await client.get("/hooks/gh", headers=ADMIN)).json() == before
    # A new id refused for the same reason is not defined at all.
    assert (await client.put("/hooks/other", json=body, headers=ADMIN)).status == 400
    assert (await client.get("/hooks/other", headers=ADMIN)).status == 404


async def test_bad_ids_and_bodies_are_400(serve: App) -> None:
    client, _ = await serve({})
    for bad in ("Upper", "-dash", "x" * 25):
        answer = await client.put(f"/hooks/{bad}", json=defined(), headers=ADMIN)
        assert answer.status == 400 and (await answer.json())["error"]["field"] == "hook", bad
    # POST /hooks/waiting is the proxy's own route (pods' reports): the id is refused, whoever asks.
    assert "reserved" in str(id_problem("waiting"))
    assert (await client.put("/hooks/waiting", json=defined(), headers=ADMIN)).status in (400, 401)
    assert "waiting" not in await (await client.get("/hooks", headers=ADMIN)).text()
    listed = await client.put("/hooks/gh", data=b"[1, 2]", headers={**ADMIN, "Content-Type": "application/json"})
    assert listed.status == 400
    broken = await client.put("/hooks/gh", data=b"{", headers={**ADMIN, "Content-Type": "application/json"})
    assert broken.status == 400


async def test_hooks_of_the_settings_cannot_be_replaced_or_deleted(serve: App) -> None:
    client, _ = await serve({"gh": hook()})
    for answer in (await client.put("/hooks/gh", json=defined(), headers=ADMIN),
                   await client.delete("/hooks/gh", headers=ADMIN)):
        assert answer.status == 409
        error = (await answer.json())["error"]
        assert error["field"] == "hook" and "defined in the settings (triggers.hooks.gh)" in error["message"]
    shown = await (await client.get("/hooks/gh", headers=ADMIN)).json()
    assert shown["source"] == "settings" and shown["secret"] == "env:TEST_HOOK_SECRET"
    body = payload("issues.opened")
    assert (await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))).status == 202


async def test_a_defined_hook_starts_an_agent_and_survives_a_restart(
        serve: App, local_settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client, backend = await serve({"fixed": hook(session="fixed")})
    made = await client.put("/hooks/gh", json=defined(), headers=ADMIN)
    assert made.status == 201
    answers = [await made.text()]
    body = payload("issues.opened")
    # Signed with the stored value: the settings' secret is not this hook's.
    wrong = await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))
    assert wrong.status == 401
    delivery = "5b0c1d3e-0000-4000-8000-000000000001"
    reply = await client.post("/hooks/gh", data=body,
                              headers=github_headers("issues", body, STORED_SECRET, delivery=delivery))
    assert reply.status == 202, await reply.text()
    agent = await reply.json()
    assert agent["hook"] == "gh" and agent["session"] == "hook-gh" and agent["owner"] == "alice"
    ready = await backend.wait_ready("hook-gh", agent["id"], HANG_GUARD)
    assert ready.spec.tags["agentproxy.trigger"] == "hook/gh"
    # A hook whose secret is a variable of the proxy, given as settings show it.
    by_env = await client.put("/hooks/gh-env", json=defined(secret="env:TEST_HOOK_SECRET", session="env-hook"),
                              headers=ADMIN)
    assert by_env.status == 201 and (await by_env.json())["secret"] == "env:TEST_HOOK_SECRET"
    listed = await client.get("/hooks", headers=ADMIN)
    answers.append(await listed.text())
    hooks = {h["id"]: h for h in (await listed.json())["hooks"]}
    assert {k: h["source"] for k, h in hooks.items()} == {"fixed": "settings", "gh": "api", "gh-env": "api"}

    # Restarted: the hooks are there, the delivery is still known, the secret still checks.
    await client.close()
    await backend.close()
    client, backend = await serve({"fixed": hook(session="fixed")})
    assert (await (await client.get("/hooks/gh", headers=ADMIN)).json())["secret"] == "stored"
    again = await client.post("/hooks/gh", data=body,
                              headers=github_headers("issues", body, STORED_SECRET, delivery=delivery))
    assert again.status == 200 and (await again.json())["duplicate"] is True
    other = await client.post("/hooks/gh", data=body, headers=github_headers("issues", body, STORED_SECRET))
    assert other.status == 202
    assert len(await backend.list(session="hook-gh")) == 2

    # The value is only in the secrets' file (mode 0600), never in an answer or a log line.
    root = Path(local_settings.local_mode.data_dir) / "triggers"
    secrets = root / "hook-secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert json.loads(secrets.read_text()) == {"gh": STORED_SECRET}
    assert STORED_SECRET not in (root / "hooks.json").read_text()
    assert all(STORED_SECRET not in text for text in answers)
    assert STORED_SECRET not in caplog.text

    # Replaced without giving the value again (secret: stored, as GET shows it): the value is kept.
    body_kept = {k: v for k, v in defined(max_running=7).items() if k != "secret_value"} | {"secret": "stored"}
    kept = await client.put("/hooks/gh", json=body_kept, headers=ADMIN)
    assert kept.status == 200 and (await kept.json())["max_running"] == 7
    assert json.loads(secrets.read_text()) == {"gh": STORED_SECRET}
    no_value = await client.put("/hooks/gh-env", json={**body_kept, "session": "env-hook"}, headers=ADMIN)
    assert no_value.status == 400 and (await no_value.json())["error"]["field"] == "secret"
    # Replaced with a reference, the stored value goes; deleted, deliveries are 404.
    assert (await client.put("/hooks/gh", json=defined(secret_env="TEST_HOOK_SECRET"), headers=ADMIN)).status == 200
    assert json.loads(secrets.read_text()) == {}
    assert (await client.delete("/hooks/gh", headers=ADMIN)).status == 204
    gone = await client.post("/hooks/gh", data=body, headers=github_headers("issues", body))
    assert gone.status == 404


class SlowClock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_proxy_sharing_the_store_sees_a_new_hook_at_once_and_a_change_within_max_age(
        tmp_path: Path) -> None:
    clock = SlowClock()
    store = LocalHookStore(tmp_path / "triggers")
    one, two = HookBook({}, store, clock=clock, max_age=5.0), HookBook({}, store, clock=clock, max_age=5.0)
    assert await two.find("gh") is None
    await one.put("gh", defined())
    found = await two.find("gh")  # a miss reads again
    assert found is not None and found.max_running == 0
    await one.put("gh", defined(max_running=2))
    clock.now += 1.0
    same = await two.find("gh")
    assert same is not None and same.max_running == 0  # its copy is young: kept
    clock.now += 5.0
    newer = await two.find("gh")
    assert newer is not None and newer.max_running == 2
    assert two.secret(newer) == STORED_SECRET.encode()
    assert await one.delete("gh") is True
    clock.now += 6.0
    assert await two.find("gh") is None
