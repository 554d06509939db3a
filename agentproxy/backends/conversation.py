"""Following an agent's conversation through agentapi's own event stream.

agentapi streams ``GET /events`` (Server-Sent Events): on connect every message
so far and then the status, afterwards each ``message_update`` and
``status_change`` as it happens. A :class:`ConversationFollower` keeps one such
stream open per agent, which costs nothing while the agent is idle, and tells
its owner when the conversation changed (local mode asks agentapi to save it)
and whether the first message of the create request has been delivered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

import aiohttp

log = logging.getLogger(__name__)

UPSTREAM_HOST = "localhost"
"""The Host header agentapi accepts by default."""

MESSAGE = "message"
"""A message was added or changed (not reported for the replay on connect)."""
STATUS = "status"
"""agentapi's status changed (``running`` while the screen changes, ``stable`` when idle)."""
DELIVERED = "delivered"
"""The first message is in the conversation."""


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


MAX_EVENT_BYTES = 32 * 1024 * 1024
"""An event larger than this ends the stream (an agent's message is rarely a megabyte)."""


async def read_events(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of a Server-Sent Events body, as they arrive.

    Lines are split here rather than with ``readline``, whose limit (64 KiB) a long
    agent message exceeds.
    """
    event, data = "message", []
    line = bytearray()
    async for chunk in content.iter_any():
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            line += chunk[start:end]
            start = end + 1
            text = line.decode("utf-8", "replace").rstrip("\r")
            line.clear()
            if not text:
                if data:
                    yield event, "\n".join(data)
                event, data = "message", []
            elif not text.startswith(":"):  # ':' starts a comment (keep-alive)
                name, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
        line += chunk[start:]
        if len(line) > MAX_EVENT_BYTES:
            raise ValueError(f"an event line of more than {MAX_EVENT_BYTES} bytes")


class ConversationFollower:
    """Follows one run of an agent's agentapi through ``GET {upstream}/events``.

    ``on_change`` is called with :data:`MESSAGE`, :data:`STATUS` or
    :data:`DELIVERED`. The stream is reopened (after ``retry`` seconds) when it
    ends while the agent still runs; :meth:`follow` returns only when cancelled.
    """

    def __init__(self, client: aiohttp.ClientSession, upstream: str, *, first_message: str | None = None,
                 on_change: Callable[[str], None] = lambda _: None, retry: float = 1.0) -> None:
        self.client = client
        self.upstream = upstream.rstrip("/")
        self.first_message = _normal(first_message) if first_message else None
        self.on_change = on_change
        self.retry = retry
        self.status: str | None = None
        """agentapi's last status: ``running``, ``stable`` or None before the first."""
        self.delivered = self.first_message is None
        """Whether the first message is in the conversation (True when there is none)."""
        self.last_message_at: float | None = None
        """``time.time()`` of the last new or changed message seen live."""
        self.connected = asyncio.Event()

    async def follow(self) -> None:
        """Read the stream until cancelled, reconnecting when it ends."""
        while True:
            try:
                await self._read_once()
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
                log.debug("events of %s: %s", self.upstream, exc or type(exc).__name__)
            self.connected.clear()
            await asyncio.sleep(self.retry)

    async def _read_once(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
        async with self.client.get(f"{self.upstream}/events", headers={"Host": UPSTREAM_HOST,
                                                                        "Accept": "text/event-stream"},
                                   timeout=timeout) as response:
            if response.status != 200:
                raise ValueError(f"GET /events answered {response.status}")
            self.connected.set()
            replaying = True  # every message so far comes first, then the status
            async for event, data in read_events(response.content):
                try:
                    body: Any = json.loads(data)
                except ValueError:
                    continue
                if not isinstance(body, dict):
                    continue
                if event == "message_update":
                    self._message(body, live=not replaying)
                elif event == "status_change":
                    replaying = False
                    status = body.get("status")
                    if status != self.status:
                        self.status = status
                        self.on_change(STATUS)

    def _message(self, body: dict[str, Any], live: bool) -> None:
        if live:
            self.last_message_at = time.time()
            self.on_change(MESSAGE)
        if (not self.delivered and body.get("role") == "user"
                and _normal(str(body.get("message", ""))) == self.first_message):
            self.delivered = True
            self.on_change(DELIVERED)
