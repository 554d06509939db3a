"""Limits that protect the service from too many agents and too many creates at once.

Both are checked before anything is made, so a refused create changes nothing:
agents per session and per owner (an API key's name) against what the backend
holds plus the creates under way, and creates carried out at once with a bounded
number waiting for their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from ..spec import AgentSpec
from .errors import TooMany

QUEUE_RETRY_AFTER = 1.0
"""The ``Retry-After`` of a create refused because too many wait: creates finish quickly."""


@dataclass(frozen=True)
class CreateLimits:
    """The limits of one backend; 0 for an agent count means no limit."""

    per_session: int = 0
    per_owner: int = 0
    concurrent: int = 1_000_000
    queued: int = 1_000_000

    @classmethod
    def from_settings(cls, agents: Any) -> CreateLimits:
        """The limits of the ``agents`` settings section."""
        return cls(per_session=agents.max_per_session, per_owner=agents.max_per_owner,
                   concurrent=agents.max_concurrent_creates, queued=agents.max_queued_creates)

    def check_room(self, spec: AgentSpec, others: Iterable[AgentSpec]) -> None:
        """Raise :class:`TooMany` when one more agent like ``spec`` would break a limit;
        ``others`` are the agents that exist or are being created (``spec``'s id excluded)."""
        if not self.per_session and not self.per_owner:
            return
        sessions: Counter[str] = Counter()
        owners: Counter[str | None] = Counter()
        for other in others:
            if other.id != spec.id:
                sessions[other.session] += 1
                owners[other.owner] += 1
        if self.per_session and sessions[spec.session] >= self.per_session:
            # The count is not told: in a shared session it includes agents the caller may not see.
            raise TooMany(f"session {spec.session!r} is full: it holds the {self.per_session} agents "
                          f"agents.max_per_session allows; delete some first")
        if self.per_owner and spec.owner is not None and owners[spec.owner] >= self.per_owner:
            raise TooMany(f"{spec.owner!r} already owns {owners[spec.owner]} agents, the most "
                          f"agents.max_per_owner allows; delete some first")


class CreateQueue:
    """At most ``concurrent`` creates at once; at most ``queued`` more wait, others are refused."""

    def __init__(self, limits: CreateLimits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(limits.concurrent)
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold a create's turn for the body of an ``async with``; :class:`TooMany` at once when
        every slot is taken and the queue is full."""
        if self._slots.locked() and self.waiting >= self.limits.queued:
                raise TooMany(f"{self.waiting} creates are already waiting for their turn "
                          f"(agents.max_queued_creates); try again shortly", retry_after=QUEUE_RETRY_AFTER)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slots.release()
