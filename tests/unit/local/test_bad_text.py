"""Text no process can be given (a NUL in an environment value, a lone surrogate in a first
message) in local mode: refused with 422 naming the field, and nothing made, not even an empty
work directory; and should such a spec reach the backend anyway, its create leaves nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.settings import Settings

from .support import spec


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (what a create could have left), the state file aside, and the
    temporary file it is written through (the start saves it in the background)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.name.lstrip(".").startswith("state"))


@pytest.fixture
async def api(settings: Settings, backend: LocalBackend) -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(settings, backend), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


# Raw JSON text: json.dumps would refuse nothing, but a client may send any escape.
@pytest.mark.parametrize("body, field", [
    ('{"id": "a1", "agent": "serve", "env": {"GREETING": "hi\\u0000there"}}', "env.GREETING"),
    ('{"id": "a1", "agent": "serve", "message": "hello \\ud800"}', "message"),
    ('{"id": "a1", "agent": "serve", "message": "\\udfff\\ud800"}', "message"),
    ('{"id": "a1", "agent": "serve", "message": "nul \\u0000"}', "message"),
    ('{"id": "a1", "agent": "serve", "env": {"A": "\\udc80"}}', "env.A"),
], ids=["env-nul", "message-surrogate", "message-reversed-pair", "message-nul", "env-surrogate"])
async def test_text_no_process_can_take_is_a_422_and_leaves_nothing(api, settings: Settings, body: str, field: str):
    data_dir = Path(settings.local_mode.data_dir)
    before = tree(data_dir)
    answer = await api.post("/sessions/s1/agents", data=body.encode(), headers={"Content-Type": "application/json"})
    assert answer.status == 422, await answer.text()
    error = (await answer.json())["error"]
    assert error["field"] == field and error["code"] == "unprocessable"
    assert "must be UTF-8 text without NUL characters" in error["message"]
    assert tree(data_dir) == before
    assert (await (await api.get("/agents")).json())["agents"] == []


async def test_a_create_the_process_refuses_leaves_no_work_directory(backend: LocalBackend, settings: Settings):
    # Past the validation layer (a caller of the backend that did not check): the launch fails.
    bad = dataclasses.replace(spec(settings, "a1"), env={"GREETING": "hi\x00there"})
    data_dir = Path(settings.local_mode.data_dir)
    with pytest.raises(ValueError):
        await backend.create(bad)
    assert [p for p in tree(data_dir) if "a1" in p] == []  # no work directory, no log
    assert await backend.list() == []
