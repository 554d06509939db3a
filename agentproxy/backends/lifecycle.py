"""Bookkeeping of suspends and resumes for :class:`~.base.Backend`: who is told of them,
how long a resumed agent takes to be ready, and waiting for an agent's next change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LifecycleEvent:
    """A suspend or resume this backend carried out (``suspended``, ``resumed``), or a resumed
    agent that became ready (``ready``, with the ``seconds`` it took). ``cause`` says who asked."""

    kind: str
    cause: str
    seconds: float | None = None


Listener = Callable[[LifecycleEvent], None]


@dataclass
class _Resume:
    started: float
    cause: str
    ready_after: float | None = None
    announced: bool = False


class ResumeTimer:
    """The resumes under way, from their start until the agent is ready: then ``listeners``
    get ``ready`` with the time it took (after the ``resumed`` of the same resume, even for
    an agent that was ready before its resume returned)."""

    def __init__(self, listeners: list[Listener]) -> None:
        self.listeners = listeners
        self._resumes: dict[str, _Resume] = {}

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self._resumes

    def __bool__(self) -> bool:
        return bool(self._resumes)

    def tell(self, event: LifecycleEvent) -> None:
        """Tell every listener."""
        for listener in self.listeners:
            listener(event)

    def begin(self, agent_id: str, cause: str) -> None:
        """A resume of the agent begins."""
        self._resumes[agent_id] = _Resume(time.monotonic(), cause)

    def done(self, agent_id: str, ready: bool) -> None:
        """The resume was carried out (``ready``: the agent is ready already): tell ``resumed``."""
        entry = self._resumes.get(agent_id)
        if entry is None:
            return
        self.tell(LifecycleEvent("resumed", entry.cause))
        entry.announced = True
        if ready and entry.ready_after is None:
            entry.ready_after = time.monotonic() - entry.started
        if entry.ready_after is not None:
            del self._resumes[agent_id]
            self.tell(LifecycleEvent("ready", entry.cause, entry.ready_after))

    def ready(self, agent_id: str) -> None:
        """The agent is ready: a resume of it took until now."""
        entry = self._resumes.get(agent_id)
        if entry is None or entry.ready_after is not None:
            return
        entry.ready_after = time.monotonic() - entry.started
        if entry.announced:
            del self._resumes[agent_id]
            self.tell(LifecycleEvent("ready", entry.cause, entry.ready_after))

    def end(self, agent_id: str) -> None:
        """The agent is no longer resuming (the resume failed or did nothing, the agent failed,
        was suspended again or deleted)."""
        self._resumes.pop(agent_id, None)


class ChangeWaiters:
    """Callers waiting for the next change of an agent."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    async def next_change(self, agent_id: str, timeout: float, unless: Callable[[], bool] | None = None) -> bool:
        """Return at the agent's next change (True), or after ``timeout`` seconds (False).
        ``unless``: looked at once the wait is registered, True returns at once: what a caller
        saw before this wait ran has moved on meanwhile (a change it would otherwise miss)."""
        changed = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(agent_id, set())
        waiters.add(changed)
        try:
            if unless is not None and unless():
                return True
            await asyncio.wait_for(changed, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters.discard(changed)
            if not waiters and self._waiters.get(agent_id) is waiters:
                del self._waiters[agent_id]

    def changed(self, agent_id: str) -> None:
        """The agent changed: every waiter returns."""
        for waiter in self._waiters.get(agent_id, ()):
            if not waiter.done():
                waiter.set_result(None)
