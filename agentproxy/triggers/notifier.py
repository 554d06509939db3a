"""Sends the notifications of :mod:`.notify`: follows the backend's status events and the
agents' turns, and posts each message with retries; what never arrives is a dead letter.

A message is posted up to ``triggers.delivery.attempts`` times, ``backoff`` seconds after the
first failure and twice as long after each further one; an answer 2xx is delivered, anything
else (another status, a refused connection, ``timeout`` passed) a failure. Signed messages are
signed again at each attempt (a fresh timestamp). Dead letters (the last error of each message
that never arrived) are kept, the newest :data:`DEAD_KEEP`, for ``GET /triggers/dead-letters``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ..api.model import agent_json
from ..backends.agent_state import AgentState, AgentStatus
from .config import Delivery, SecretMissing, Subscription, secret_of
from .notify import Debounce, TurnWatch, message, status_news, subscribed
from .records import Recent
from .signatures import sign_notification

log = logging.getLogger("agentproxy.triggers")

DEAD_KEEP = 1000
POLL = 1.0
"""Seconds between looks at the turns of agents some subscription wants ``ready`` news of."""


class Notifier:
    """The notifications of one proxy."""

    def __init__(self, backend: Any, subscriptions: tuple[Subscription, ...], delivery: Delivery, recent: Recent,
                 http: Callable[[], aiohttp.ClientSession], clock: Callable[[], float] = time.time,
                 poll: float = POLL) -> None:
        self.backend = backend
        self.subscriptions = subscriptions
        self.delivery = delivery
        self.recent = recent
        self.http = http
        self.clock = clock
        self.poll = poll
        self.dead: deque[dict[str, Any]] = deque(maxlen=DEAD_KEEP)
        self.debounce = Debounce(delivery.debounce)
        self.turns = TurnWatch()
        self._last: dict[str, AgentState] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[Any]] = []
        self.started_at = datetime.now(UTC)

    def start(self) -> None:
        """Follow events (and turns, when a subscription wants them) from now on."""
        if not self.subscriptions:
            return
        self.started_at = datetime.now(UTC)
        events = self.backend.events()
        self._loops.append(asyncio.create_task(self._follow(events)))
        if any("ready" in s.events for s in self.subscriptions):
            self._loops.append(asyncio.create_task(self._watch_turns()))

    async def close(self) -> None:
        """Stop following; messages under way are given up (they are not dead letters)."""
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def idle(self) -> None:
        """Wait until no message is under way (tests and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _follow(self, events: Any) -> None:
        async for event in events:
            try:
                state = event.agent
                previous = self._last.get(state.id)
                if event.type == "deleted":
                    self._last.pop(state.id, None)
                    self.turns.forget(state.id)
                else:
                    self._last[state.id] = state
                kind = status_news(previous, event.type, state)
                if kind is not None:
                    self.notify(kind, state)
            except Exception:  # noqa: BLE001 - one bad event must not end the notifications
                log.exception("notification of an event failed")

    async def _watch_turns(self) -> None:
        while True:
            await asyncio.sleep(self.poll)
            wanted = [s for s in self.subscriptions if "ready" in s.events]
            for state in list(self._last.values()):
                if state.status is not AgentStatus.READY or not any(subscribed(s, state) for s in wanted):
                    continue
                try:
                    activity = await self.backend.activity(state)
                except Exception:  # noqa: BLE001 - an agent that cannot tell now is asked again next time
                    continue
                created = state.created_at if state.created_at.tzinfo else state.created_at.replace(tzinfo=UTC)
                if self.turns.observe(state.id, activity.status, activity.last_message_at,
                                      fresh=created >= self.started_at):
                    self.notify("ready", state)

    def notify(self, kind: str, state: AgentState) -> None:
        """Send ``kind`` news of ``state`` to every subscription that wants it (debounced)."""
        now = self.clock()
        self.debounce.forget_before(now)
        for sub in self.subscriptions:
            if kind not in sub.events or not subscribed(sub, state):
                continue
            # Per kind: a flap repeats one kind; another kind is other news. The end of an agent is
            # told whatever came just before.
            held = 0 if kind == "deleted" else self.debounce.admit((sub.name, state.session, state.id, kind), now)
            if held is None:
                continue
            body = json.dumps(message(sub, kind, agent_json(state), held, now), separators=(",", ":")).encode()
            task = asyncio.create_task(self._deliver(sub, kind, state, body))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, sub: Subscription, kind: str, state: AgentState, body: bytes) -> None:
        started = self.clock()
        error = "not sent"
        attempt = 0
        for attempt in range(1, self.delivery.attempts + 1):
            if attempt > 1:
                await asyncio.sleep(self.delivery.backoff * 2 ** (attempt - 2))
            try:
                url = sub.url or os.environ.get(sub.url_env or "", "")
                if not url:
                    raise SecretMissing(f"the variable {sub.url_env} is not set")
                headers = {"Content-Type": "application/json", "User-Agent": "agentproxy"}
                if sub.secret is not None:
                    headers.update(sign_notification(secret_of(sub.secret), body, int(self.clock())))
                async with self.http().post(url, data=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=self.delivery.timeout)) as reply:
                    await reply.read()
                    if 200 <= reply.status < 300:
                        self.recent.add("notification", sub.name, type=kind, agent=f"{state.session}/{state.id}",
                                        status=reply.status, attempts=attempt,
                                        seconds=round(self.clock() - started, 3))
                        return
                    error = f"answered {reply.status}"
            except SecretMissing as exc:
                error = str(exc)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
        letter = self.recent.add("notification", sub.name, type=kind, agent=f"{state.session}/{state.id}",
                                 status=None, attempts=attempt, error=error, dead=True)
        self.dead.append(letter)
        log.warning("notification %s of %s/%s to %s not delivered after %d attempts: %s", kind, state.session,
                    state.id, sub.name, attempt, error)
