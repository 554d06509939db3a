"""Credentials per user and per group in local mode, over real HTTP, with the real agentapi: set
write-only, listed by name, mapped by a profile into the agent's environment at each start (the
user's, else the group's), and never in an API answer, a log line or ``render`` output."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app, hash_key
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.render import dump_yaml, render_agent

from .support import shut_down, wait_for

ALICE, BOB, CAROL = "k-alice", "k-bob", "k-carol"
KEYS = [{"name": "alice", "sha256": hash_key(ALICE)}, {"name": "bob", "sha256": hash_key(BOB)},
        {"name": "carol", "sha256": hash_key(CAROL)}]
ALICE_SECRET = "sk-alice-0123456789-SECRET"
GROUP_SECRET = "sk-group-abcdefghij-SECRET"
NEW_SECRET = "sk-alice-rotated-777-SECRET"


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings(settings):
    settings.teams.groups = {"ml": ["alice", "bob"]}
    settings.teams.profiles = {"envy": {"agent": "env", "credentials": {"MODEL_TOKEN": "anthropic"},
                                        "instructions": "Be terse."}}
    return settings


class Recorder:
    """Every answer body of the API, to search for a secret afterwards."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.bodies: list[str] = []

    async def call(self, method: str, path: str, key: str, status: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=h(key), **kwargs)
        text = await response.text()
        self.bodies.append(text + json.dumps(dict(response.headers)))
        assert response.status == status, text
        return json.loads(text) if response.content_type == "application/json" else text


@pytest.fixture
async def api(settings, tmp_path: Path) -> AsyncIterator[tuple[Recorder, LocalBackend]]:
    backend = LocalBackend(settings)
    await backend.start()
    client = TestClient(TestServer(create_app(settings, backend, KEYS), host="127.0.0.1"))
    await client.start_server()
    try:
        yield Recorder(client), backend
    finally:
        await client.close()
        await shut_down(backend)


def agent_env(state: Any) -> dict[str, str]:
    path = Path(state.details["work_dir"]) / "env.json"
    return json.loads(path.read_text())


async def env_written(backend: LocalBackend, agent_id: str, session: str = "s1") -> dict[str, str]:
    def ready_with_env(state: Any) -> bool:
        return state.status.value == "ready" and (Path(state.details["work_dir"]) / "env.json").exists()
    return agent_env(await wait_for(backend, agent_id, ready_with_env, session=session, timeout=60))


async def test_credentials_reach_agents_and_nothing_else(api, settings, caplog):
    caplog.set_level(logging.DEBUG)
    rec, backend = api
    # Write-only: the answer names it and its time, never the value.
    put = await rec.call("PUT", "/credentials/anthropic", ALICE, 200, json={"value": ALICE_SECRET})
    assert put["name"] == "anthropic" and put["owner"] == {"kind": "user", "name": "alice"}
    await rec.call("PUT", "/credentials/anthropic?group=ml", BOB, 200, json={"value": GROUP_SECRET})
    listed = await rec.call("GET", "/credentials", ALICE, 200)
    assert [c["name"] for c in listed["credentials"]] == ["anthropic"] and set(listed["credentials"][0]) == {
        "name", "updated_at"}
    assert (await rec.call("GET", "/credentials", CAROL, 200))["credentials"] == []
    # A group one is not in, a bad name, a bad body: refused, naming the field.
    assert (await rec.call("PUT", "/credentials/x?group=ml", CAROL, 403, json={"value": "v"}))["error"][
        "field"] == "group"
    assert (await rec.call("PUT", "/credentials/Bad%20Name", ALICE, 400, json={"value": "v"}))["error"][
        "field"] == "name"
    assert (await rec.call("PUT", "/credentials/x", ALICE, 422, json={"value": 5}))["error"]["field"] == "value"
    assert (await rec.call("PUT", "/credentials/x", ALICE, 400, json={"value": "v", "more": 1}))["error"][
        "field"] == "more"

    # The files: 0600, in a 0700 directory under the data dir.
    root = Path(settings.local_mode.data_dir) / "credentials"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in root.iterdir()} == {0o600}

    # alice's agent gets alice's credential; bob's (who has none of his own) the group's.
    await rec.call("POST", "/sessions/s1/agents", ALICE, 201, json={"id": "a1", "profile": "envy"})
    await rec.call("POST", "/sessions/s2/agents", BOB, 201, json={"id": "b1", "profile": "envy"})
    env_a = await env_written(backend, "a1")
    assert env_a["MODEL_TOKEN"] == ALICE_SECRET
    assert (Path(env_a["HOME"]) / "AGENTS.md").read_text() == "Be terse."
    assert (await env_written(backend, "b1", "s2"))["MODEL_TOKEN"] == GROUP_SECRET

    # A changed credential applies at the next start (here a resume).
    await rec.call("PUT", "/credentials/anthropic", ALICE, 200, json={"value": NEW_SECRET})
    state = await backend.get("s1", "a1")
    os.unlink(Path(state.details["work_dir"]) / "env.json")
    await rec.call("POST", "/sessions/s1/agents/a1/suspend", ALICE, 200)
    await rec.call("POST", "/sessions/s1/agents/a1/resume", ALICE, 200)
    assert (await env_written(backend, "a1"))["MODEL_TOKEN"] == NEW_SECRET

    # Every answer, including agent lists, logs and the agent itself.
    for path in ("/agents", "/sessions/s1/agents/a1", "/sessions/s1/agents/a1/logs?tail=1000",
                 "/sessions/s1/agents/a1/api/status", "/profiles", "/credentials", "/openapi.json"):
        await rec.call("GET", path, ALICE, 200)
    await rec.call("DELETE", "/credentials/anthropic", ALICE, 200)
    await rec.call("DELETE", "/credentials/anthropic", ALICE, 404)
    rendered = dump_yaml(render_agent(settings, state.spec))
    haystacks = rec.bodies + [caplog.text, rendered, json.dumps(state.spec.to_dict()),
                              (Path(settings.local_mode.data_dir) / "state.json").read_text()]
    for secret in (ALICE_SECRET, GROUP_SECRET, NEW_SECRET):
        assert not [text for text in haystacks if secret in text]
