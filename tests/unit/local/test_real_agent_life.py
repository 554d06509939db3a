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
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from testenv.ports import free_port
from tests.conversation import agent_said, exchanges, messages, say

from .support import AGENT_NICE, assert_nothing_left, processes_in

SESSION = "team"
AGENT = "life"


class Server:
    """`agentproxy serve` in local mode, started and killed by the test."""

    def __init__(self, data_dir: Path, ports: tuple[int, int], launcher: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "AGENTAPI_SERVER_PORT": str(self.port),
                    "AGENTAPI_LOCAL_MODE_DATA_DIR": str(data_dir),
                    "AGENTAPI_LOCAL_MODE_AGENTAPI_BINARY": launcher,
                    "AGENTAPI_LOCAL_MODE_PORTS_START": str(ports[0]),
                    "AGENTAPI_LOCAL_MODE_PORTS_END": str(ports[1]),
                    "AGENTAPI_LOCAL_MODE_STATE_SAVE_INTERVAL": "300ms",
                    "AGENTAPI_LOCAL_MODE_AGENT_NICE": str(AGENT_NICE)}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "serve.log"

    async def start(self, client: aiohttp.ClientSession) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "agentproxy", "serve"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"serve exited: {self.log.read_text()}"
            try:
                async with client.get(f"{self.base}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"serve never got ready: {self.log.read_text()}"
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def route(self, agent: str = AGENT) -> str:
        return f"{self.base}/sessions/{SESSION}/agents/{agent}"


async def agent_json(client: aiohttp.ClientSession, server: Server) -> dict[str, Any] | None:
    async with client.get(server.route()) as response:
        return await response.json() if response.status == 200 else None


async def until(client: aiohttp.ClientSession, server: Server, check, what: str, timeout: float = 40.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        agent = await agent_json(client, server)
        if agent is not None and check(agent):
            return agent
        assert time.monotonic() < deadline, f"timed out waiting for {what}; last: {agent}"
        await asyncio.sleep(0.05)


def ready(agent: dict) -> bool:
    return agent["status"] == "ready"


@asynccontextmanager
async def serving(server: Server, tmp_path: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """A client for ``server``; on the way out every agent left is deleted through a live
    server (started again if the test stopped it), and nothing may be left running."""
    async with aiohttp.ClientSession() as client:
        try:
            yield client
        finally:
            try:
                if server.proc is None or server.proc.poll() is not None:
                    await server.start(client)
                async with client.get(f"{server.base}/agents") as response:
                    for agent in (await response.json())["agents"]:
                        async with client.delete(f"{server.base}/sessions/{agent['session']}/agents/{agent['id']}"):
                            pass
            finally:
                # Also when the server could not start again or answer: nothing of the test may outlive it.
                server.stop()
                for proc in processes_in(tmp_path):
                    proc.kill()
    await assert_nothing_left(tmp_path)


@pytest.fixture
async def life(tmp_path: Path, ports: tuple[int, int], launcher: str) -> AsyncIterator[tuple[Server, Any]]:
    server = Server(tmp_path / "data", ports, launcher)
    async with serving(server, tmp_path) as client:
        yield server, client


def state_file_holds(work_dir: Path, text: str) -> bool:
    path = work_dir / ".agentproxy" / "agentapi-state.json"
    try:
        return any(text in m["message"] for m in json.loads(path.read_text())["messages"])
    except (OSError, ValueError, KeyError):
        return False


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
    await asyncio.to_thread(_wait, lambda: state_file_holds(work_dir, "echo: second"), "the state file")
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


def _wait(check, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
