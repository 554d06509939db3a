"""One agent's whole life in local mode, over HTTP, with the real agentapi and the echo demo.

`agentproxy serve` runs as a process of its own, so that it can be killed with
SIGKILL. The first message of the create request reaches the agent once; the
conversation survives a killed agentapi (restarted by the supervisor), a killed
proxy (the agent is re-adopted), and a delete without purge; purge removes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conversation import agent_said, exchanges, messages, say

from .serve_process import AGENT, SESSION, Server, ready, serving, state_file_holds, until, wait_blocking
from .support import assert_nothing_left


@pytest.fixture
async def life(tmp_path: Path, ports: tuple[int, int], launcher: str) -> AsyncIterator[tuple[Server, Any]]:
    server = Server(tmp_path / "data", ports, launcher)
    async with serving(server, tmp_path) as client:
        yield server, client


async def test_an_agent_keeps_its_conversation_through_crashes_restarts_and_delete(life, tmp_path):
    server, client = life
    await server.start(client)
    async with client.post(f"{server.base}/sessions/{SESSION}/agents",
                           json={"id": AGENT, "message": "hello"}) as response:
        assert response.status == 201, await response.text()
    agent = await until(client, server, ready, "the agent to be ready")
    api = f"{server.route()}/api"

    # The first message arrives once, with its reply, through the proxy route.
    first = await agent_said(client, api, "echo: hello")
    assert exchanges(first) == [("user", "hello"), ("agent", "echo: hello")]
    # Another one through the proxy.
    await say(client, api, "second")
    both = [("user", "hello"), ("agent", "echo: hello"), ("user", "second"), ("agent", "echo: second")]
    assert exchanges(await messages(client, api)) == both

    # SIGKILL of agentapi: it saves nothing itself, but the proxy had it save each change
    # (local_mode.state_save_interval): the supervisor restarts it with the conversation.
    work_dir = Path(agent["details"]["work_dir"])
    await asyncio.to_thread(wait_blocking, lambda: state_file_holds(work_dir, "echo: second"), "the state file")
    os.kill(agent["details"]["pid"], signal.SIGKILL)
    restarted = await until(client, server, lambda a: a["restarts"] == 1 and ready(a), "the restart")
    assert restarted["details"]["pid"] != agent["details"]["pid"]
    assert exchanges(await agent_said(client, api, "echo: second")) == both  # "hello" is not sent again

    # SIGKILL of the proxy: the agent keeps running and the next proxy re-adopts it.
    server.kill()
    await server.start(client)
    adopted = await until(client, server, ready, "the re-adopted agent")
    assert adopted["details"]["pid"] == restarted["details"]["pid"] and adopted["details"]["adopted"] is True
    assert adopted["details"]["port"] == restarted["details"]["port"]
    assert exchanges(await messages(client, api)) == both
    await say(client, api, "third")

    # Delete without purge: agentapi saves on SIGTERM, nothing runs, the data stays.
    pid = adopted["details"]["pid"]
    async with client.delete(server.route()) as response:
        assert response.status == 200, await response.text()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    await assert_nothing_left(work_dir)
    assert state_file_holds(work_dir, "echo: third")

    # The same agent again: its conversation is back, and the first message is not repeated.
    async with client.post(f"{server.base}/sessions/{SESSION}/agents",
                           json={"id": AGENT, "message": "hello"}) as response:
        assert response.status == 201, await response.text()
    await until(client, server, ready, "the recreated agent")
    again = exchanges(await agent_said(client, api, "echo: third"))
    assert again == [*both, ("user", "third"), ("agent", "echo: third")]

    # Purge: the work directory and the state in it are gone.
    async with client.delete(f"{server.route()}?purge=true") as response:
        assert response.status == 200
    assert not work_dir.exists()


async def test_a_first_message_the_agent_never_takes_is_a_reason(life, tmp_path, ports):
    server, client = life
    # An agent without a prompt: agentapi waits for one before it sends the first message.
    server.env["AGENTAPI_AGENTS_COMMANDS"] = json.dumps({"mute": [sys.executable, "-c",
                                                                 "import time; print('no prompt here'); "
                                                                 "time.sleep(120)"]})
    server.env["AGENTAPI_AGENTS_FIRST_MESSAGE_TIMEOUT"] = "1s"
    await server.start(client)
    async with client.post(f"{server.base}/sessions/{SESSION}/agents",
                           json={"id": AGENT, "agent": "mute", "message": "are you there?"}) as response:
        assert response.status == 201, await response.text()
    pending = await until(client, server, lambda a: a["reason"] == "FirstMessagePending", "the reason")
    assert pending["status"] == "ready"
    assert "first message is not delivered" in pending["message"] and "input prompt" in pending["message"]
    api = f"{server.route()}/api"
    assert all(m["role"] == "agent" for m in await messages(client, api))


