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
from collections.abc import Callable
from typing import Any

import aiohttp

from ..launch import AGENTAPI_HOST
from ..sse import read_events
from .suspension import AgentActivity, parse_time

log = logging.getLogger(__name__)

UPSTREAM_HOST = AGENTAPI_HOST
"""The Host header agentapi accepts by default."""

MESSAGE = "message"
"""A message was added or changed (not reported for the replay on connect)."""
STATUS = "status"
"""agentapi's status changed (``running`` while the screen changes, ``stable`` when idle)."""
DELIVERED = "delivered"
"""The first message is in the conversation."""


def _normal(text: str) -> str:
    return text.replace("\r\n", "\n").strip()


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
        self.replayed = asyncio.Event()
        """Set once the conversation so far has been read (the first status after connecting)."""

    async def follow(self) -> None:
        """Read the stream until cancelled, reconnecting when it ends."""
        while True:
            try:
                await self._read_once()
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("events of %s: %s", self.upstream, exc or type(exc).__name__)
            await asyncio.sleep(self.retry)

    async def _read_once(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
        async with self.client.get(f"{self.upstream}/events", headers={"Host": UPSTREAM_HOST,
                                                                        "Accept": "text/event-stream"},
                                   timeout=timeout) as response:
            if response.status != 200:
                raise ValueError(f"GET /events answered {response.status}")
            replaying = True  # every message so far comes first, then the status
            async for event in read_events(response.content):
                try:
                    body: Any = json.loads(event.data)
                except ValueError:
                    continue
                if not isinstance(body, dict):
                    continue
                if event.name == "message_update":
                    self._message(body, live=not replaying)
                elif event.name == "status_change":
                    replaying = False
                    self.replayed.set()
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


ACTIVITY_TIMEOUT = 5.0
"""Seconds :func:`read_activity` gives each of its two requests."""


async def read_activity(client: aiohttp.ClientSession, upstream: str) -> AgentActivity:
    """agentapi's status and the time of its last message, asked of the agent itself (for an
    agent whose conversation nobody follows); what it cannot tell stays None."""
    status = await _get_json(client, f"{upstream.rstrip('/')}/status")
    if not isinstance(status, dict):
        return AgentActivity()
    listing = await _get_json(client, f"{upstream.rstrip('/')}/messages")
    messages = listing.get("messages") if isinstance(listing, dict) else None
    last = messages[-1] if isinstance(messages, list) and messages and isinstance(messages[-1], dict) else {}
    agentapi_status = status.get("status")
    return AgentActivity(agentapi_status if isinstance(agentapi_status, str) else None, parse_time(last.get("time")))


async def _get_json(client: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with client.get(url, headers={"Host": UPSTREAM_HOST},
                              timeout=aiohttp.ClientTimeout(total=ACTIVITY_TIMEOUT)) as response:
            return await response.json(content_type=None) if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return None


FIRST_MESSAGE_PENDING = "FirstMessagePending"
"""Reason of a ready agent whose first message is overdue."""


def first_message_overdue(timeout: float, agentapi_status: str | None) -> str:
    """The message that goes with :data:`FIRST_MESSAGE_PENDING`."""
    return (f"the first message is not delivered {timeout:g} s after the agent became ready: agentapi sends it "
            f"once the agent shows its input prompt (agentapi status: {agentapi_status or 'unknown'})")


class FirstMessageTracker:
    """Whether each ready agent's first message has been delivered, for a backend that
    sees its agents only from outside (Kubernetes).

    A ready agent whose spec has a message is followed until the message is in its
    conversation; then the stream is closed, and the agent is never followed again
    (agentapi's state file, on the agent's volume, keeps it from being sent twice).
    ``on_change(agent_id)`` is called when an agent becomes or stops being overdue, and when
    the agentapi status its overdue message names changes.
    """

    def __init__(self, client: aiohttp.ClientSession, timeout: float, on_change: Callable[[str], object],
                 concurrent_replays: int = 16) -> None:
        self.client = client
        self.timeout = timeout
        self.on_change = on_change
        self._delivered: set[str] = set()
        self._overdue: set[str] = set()
        self._followers: dict[str, tuple[ConversationFollower, asyncio.Task[None], asyncio.TimerHandle]] = {}
        # After a restart every ready agent is followed once: a few replays at a time.
        self._replays = asyncio.Semaphore(concurrent_replays)

    def overdue(self, agent_id: str) -> str | None:
        """The overdue message of ``agent_id``, or None."""
        if agent_id not in self._overdue:
            return None
        follower = self._followers.get(agent_id)
        return first_message_overdue(self.timeout, follower[0].status if follower else None)

    def observe(self, agent_id: str, message: str | None, ready: bool, upstream: str | None) -> None:
        """The agent's latest state: follow it while it is ready and its message is not delivered."""
        if not message or agent_id in self._delivered:
            return
        current = self._followers.get(agent_id)
        if ready and upstream:
            if current is not None and current[0].upstream == upstream.rstrip("/"):
                return
            self._stop(agent_id)
            follower = ConversationFollower(self.client, upstream, first_message=message,
                                            on_change=lambda what: self._changed(agent_id, what))
            task = asyncio.get_running_loop().create_task(self._follow(follower), name=f"first message {agent_id}")
            timer = asyncio.get_running_loop().call_later(self.timeout, self._late, agent_id)
            self._followers[agent_id] = (follower, task, timer)
        else:
            self._stop(agent_id)
            self._set_overdue(agent_id, False)

    def forget(self, agent_id: str) -> None:
        """The agent is gone."""
        self._stop(agent_id)
        self._delivered.discard(agent_id)
        self._overdue.discard(agent_id)

    async def close(self) -> None:
        """Stop following every agent."""
        tasks = [task for _, task, _ in self._followers.values()]
        for agent_id in list(self._followers):
            self._stop(agent_id)
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, follower: ConversationFollower) -> None:
        async with self._replays:
            task = asyncio.ensure_future(follower.follow())
            try:
                await asyncio.wait_for(asyncio.shield(follower.replayed.wait()), self.timeout)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                task.cancel()
                raise
        try:
            await task
        finally:
            task.cancel()

    def _stop(self, agent_id: str) -> None:
        entry = self._followers.pop(agent_id, None)
        if entry is not None:
            entry[1].cancel()
            entry[2].cancel()

    def _late(self, agent_id: str) -> None:
        if agent_id in self._followers and agent_id not in self._delivered:
            self._set_overdue(agent_id, True)

    def _changed(self, agent_id: str, what: str) -> None:
        if what == DELIVERED:
            self._delivered.add(agent_id)
            self._stop(agent_id)
            self._set_overdue(agent_id, False)
        elif what == STATUS and agent_id in self._overdue:
            self.on_change(agent_id)  # the overdue message names agentapi's status

    def _set_overdue(self, agent_id: str, overdue: bool) -> None:
        if overdue != (agent_id in self._overdue):
            (self._overdue.add if overdue else self._overdue.discard)(agent_id)
            self.on_change(agent_id)
