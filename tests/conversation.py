"""Talking to an agent's agentapi in tests, directly or through agentproxy's proxy route.

``base`` is either an agentapi server (``http://127.0.0.1:PORT``) or a proxy route
(``http://127.0.0.1:8080/sessions/S/agents/A/api``): both answer the same API.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

AGENTAPI_HOST = {"Host": "localhost"}
"""agentapi answers only localhost-style Host headers (the proxy sets it itself)."""


async def call(client: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Any:
    """One request; the JSON answer (fails the test on anything but 200)."""
    async with client.request(method, url, headers=AGENTAPI_HOST, timeout=aiohttp.ClientTimeout(total=60),
                              **kwargs) as response:
        assert response.status == 200, f"{method} {url}: {response.status} {await response.text()}"
        return await response.json()


async def messages(client: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    """The conversation so far."""
    return (await call(client, "GET", f"{base}/messages"))["messages"]


async def wait_answering(client: aiohttp.ClientSession, base: str, timeout: float = 30.0) -> None:
    """Until agentapi answers ``GET /status`` (through a proxy: until it stops saying 502/503)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with client.get(f"{base}/status", headers=AGENTAPI_HOST) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"{base} never answered GET /status"
        await asyncio.sleep(0.05)


async def wait_stable(client: aiohttp.ClientSession, base: str, timeout: float = 30.0) -> None:
    """agentapi takes user messages only while the agent is idle ("stable")."""
    deadline = time.monotonic() + timeout
    while (await call(client, "GET", f"{base}/status"))["status"] != "stable":
        assert time.monotonic() < deadline, "the agent never became stable"
        await asyncio.sleep(0.1)


async def agent_said(client: aiohttp.ClientSession, base: str, text: str, timeout: float = 30.0) -> list:
    """The conversation, once an agent message contains ``text``."""
    deadline = time.monotonic() + timeout
    while True:
        found = await messages(client, base)
        if any(m["role"] == "agent" and text in m["content"] for m in found):
            return found
        assert time.monotonic() < deadline, f"no agent message with {text!r}: {found}"
        await asyncio.sleep(0.1)


async def say(client: aiohttp.ClientSession, base: str, text: str) -> list:
    """Send a user message once the agent is stable; the conversation once the echo is in."""
    await wait_stable(client, base)
    assert (await call(client, "POST", f"{base}/message", json={"content": text, "type": "user"}))["ok"] is True
    return await agent_said(client, base, f"echo: {text}")


def exchanges(conversation: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """``(role, text)`` of every message after agentapi's startup screen, whitespace trimmed."""
    return [(m["role"], m["content"].strip()) for m in conversation if m["id"] != 0]
