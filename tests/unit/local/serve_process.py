"""A real ``agentproxy serve`` in local mode, in a process of its own that the tests start and kill,
and what they ask it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from testenv.ports import free_port

from .support import AGENT_NICE, assert_nothing_left, processes_in

SESSION = "team"
AGENT = "life"
BLOCK = 16
"""Ports of a server: the first for the server, the others for its agents."""
HANG_GUARD = 60.0
"""Seconds after which a wait gives up (a bound, not a measurement)."""


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


def state_file_holds(work_dir: Path, text: str) -> bool:
    path = work_dir / ".agentproxy" / "agentapi-state.json"
    try:
        return any(text in m["message"] for m in json.loads(path.read_text())["messages"])
    except (OSError, ValueError, KeyError):
        return False


def wait_blocking(check, what: str, timeout: float = 20.0) -> None:
    """Wait until ``check()`` holds, blocking (for a thread of its own)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def post(client: aiohttp.ClientSession, url: str, body: Any = None, status: int = 200) -> dict[str, Any]:
    async with client.post(url, json=body) as response:
        assert response.status == status, await response.text()
        return await response.json()
