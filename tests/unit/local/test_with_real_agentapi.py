"""The local backend with the real agentapi and the echo demo agent.

Skipped where agentapi is not installed: on PATH, or where ``testenv/build.sh``
puts it (``$AGENTPROXY_CACHE/bin/agentapi-v0.12.1/agentapi``, the cache defaulting
to ``~/.cache/agentproxy``). The other tests of this directory use a stand-in.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from agentproxy.backends.local.backend import AGENTAPI_VERSION, LocalBackend

from .conftest import FAST, assert_nothing_left, make_settings, shut_down, spec, wait_ready


def real_agentapi() -> str | None:
    cache = os.environ.get("AGENTPROXY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "agentproxy")
    built = Path(cache) / "bin" / f"agentapi-{AGENTAPI_VERSION}" / "agentapi"
    if built.is_file() and os.access(built, os.X_OK):
        return str(built)
    return shutil.which("agentapi")


AGENTAPI = real_agentapi()

pytestmark = pytest.mark.skipif(
    AGENTAPI is None,
    reason=f"agentapi is not installed (not on PATH, nor built by testenv/build.sh into "
           f"~/.cache/agentproxy/bin/agentapi-{AGENTAPI_VERSION}/agentapi); "
           f"install it with `go install github.com/coder/agentapi@{AGENTAPI_VERSION}`")


async def call(client: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    async with client.request(method, url, headers={"Host": "localhost"},
                              timeout=aiohttp.ClientTimeout(total=60), **kwargs) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_stable(client: aiohttp.ClientSession, upstream: str, timeout: float = 30.0) -> None:
    """agentapi takes messages only while the screen is stable (unchanged for a while)."""
    deadline = time.monotonic() + timeout
    while (await call(client, "GET", f"{upstream}/status"))["status"] != "stable":
        assert time.monotonic() < deadline, "agentapi never became stable"
        await asyncio.sleep(0.2)


async def agent_said(client: aiohttp.ClientSession, upstream: str, text: str, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        messages = (await call(client, "GET", f"{upstream}/messages"))["messages"]
        if any(m["role"] == "agent" and text in m["content"] for m in messages):
            return messages
        assert time.monotonic() < deadline, f"no agent message with {text!r}: {messages}"
        await asyncio.sleep(0.2)


async def test_echo_agent_answers_and_keeps_its_conversation_across_a_proxy_restart(tmp_path, ports):
    settings = make_settings(tmp_path / "data", AGENTAPI, ports)
    policy = dataclasses.replace(FAST, start_timeout=30.0, stop_grace=10.0)
    first = LocalBackend(settings, policy=policy)
    await first.start()
    async with aiohttp.ClientSession() as client:
        try:
            await first.create(spec(settings, "r1", "echo"))
            state = await wait_ready(first, "r1", timeout=40)
            assert (await call(client, "GET", f"{state.upstream}/status"))["agent_type"] == "custom"
            await wait_stable(client, state.upstream)
            assert (await call(client, "POST", f"{state.upstream}/message",
                               json={"content": "hello from the test", "type": "user"}))["ok"] is True
            before = await agent_said(client, state.upstream, "echo: hello from the test")
        finally:
            await first.close()  # the agent keeps running

        second = LocalBackend(settings, policy=policy)
        await second.start()
        try:
            again = await wait_ready(second, "r1", timeout=40)
            assert again.details["pid"] == state.details["pid"] and again.details["adopted"] is True
            after = (await call(client, "GET", f"{again.upstream}/messages"))["messages"]
            assert [m["content"] for m in after][:len(before)] == [m["content"] for m in before]
            pid = again.details["pid"]
            await second.delete("s1", "r1")
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        finally:
            await shut_down(second)
    await assert_nothing_left(tmp_path)
