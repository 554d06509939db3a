"""An in-memory :class:`~agentproxy.backends.base.Backend` for the tests of the HTTP layer.

It keeps the contract of the interface: idempotent create of an equal spec,
:class:`Conflict` for a different one (agent ids are unique across sessions, as
object names are in Kubernetes), :class:`NotFound` for an agent of another
session, listing in creation order, and a stream of status events per caller
of :meth:`events`. Nothing runs: an agent is ``ready`` at once when the backend
was given an upstream URL, ``pending`` otherwise; tests move agents with
:meth:`set_state`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator

from agentproxy.backends.base import (
    AgentState, AgentStatus, Backend, BackendError, Conflict, NotFound, StatusEvent,
)
from agentproxy.spec import AgentSpec

_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)


class _Subscription:
    """One caller's events: registered when created, removed when closed."""

    def __init__(self, subscribers: set["_Subscription"]) -> None:
        self.queue: asyncio.Queue[StatusEvent | None] = asyncio.Queue()
        self._subscribers = subscribers
        subscribers.add(self)

    def __aiter__(self) -> "_Subscription":
        return self

    async def __anext__(self) -> StatusEvent:
        event = await self.queue.get()
        if event is None:
            await self.aclose()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        self._subscribers.discard(self)


class MemoryBackend(Backend):
    """Agents in a dict; events to every subscriber."""

    mode = "memory"

    def __init__(self, upstream: str | None = None) -> None:
        self.upstream = upstream
        """Base URL every new agent's API is at; agents are ready at once when it is set."""
        self.agents: dict[str, AgentState] = {}
        self.log_lines: dict[str, list[str]] = {}
        self.is_healthy = True
        self.fail_next: BackendError | None = None
        """Raised (once) by the next create or delete, to stand for a platform failure."""
        self.deleted: list[tuple[str, str, bool]] = []
        self.started = self.closed = False
        self._subscribers: set[_Subscription] = set()
        self._clock = itertools.count()

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True
        for sub in list(self._subscribers):
            sub.queue.put_nowait(None)

    @property
    def subscribers(self) -> int:
        """How many event streams are open."""
        return len(self._subscribers)

    def _raise_injected(self) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    def _emit(self, kind: str, state: AgentState) -> None:
        for sub in list(self._subscribers):
            sub.queue.put_nowait(StatusEvent(kind, state))

    async def create(self, spec: AgentSpec) -> AgentState:
        self._raise_injected()
        existing = self.agents.get(spec.id)
        if existing is not None:
            if existing.spec == spec:
                return existing
            raise Conflict(f"agent {spec.id!r} exists with a different spec", field="id")
        ready = self.upstream is not None
        state = AgentState(
            spec=spec, mode=self.mode, status=AgentStatus.READY if ready else AgentStatus.PENDING,
            created_at=_EPOCH + timedelta(seconds=next(self._clock)), upstream=self.upstream,
            details={"store": "memory"},
        )
        self.agents[spec.id] = state
        self.log_lines[spec.id] = [f"agent {spec.id} line {i}" for i in range(1, 201)]
        self._emit("added", state)
        return state

    async def get(self, session: str, agent_id: str) -> AgentState:
        state = self.agents.get(agent_id)
        if state is None or state.session != session:
            raise NotFound(f"agent {agent_id!r} not found in session {session!r}")
        return state

    async def list(self, session: str | None = None, status: AgentStatus | None = None) -> list[AgentState]:
        return [s for s in sorted(self.agents.values(), key=lambda s: s.created_at)
                if (session is None or s.session == session) and (status is None or s.status == status)]

    async def delete(self, session: str, agent_id: str, purge: bool = False) -> AgentState:
        state = await self.get(session, agent_id)
        self._raise_injected()
        del self.agents[agent_id]
        self.log_lines.pop(agent_id, None)
        self.deleted.append((session, agent_id, purge))
        final = dataclasses.replace(state, status=AgentStatus.STOPPED, upstream=None)
        self._emit("deleted", final)
        return final

    async def logs(self, session: str, agent_id: str, tail_lines: int = 100) -> str:
        await self.get(session, agent_id)
        lines = self.log_lines.get(agent_id, [])
        return "".join(f"{line}\n" for line in lines[-tail_lines:])

    def events(self) -> AsyncIterator[StatusEvent]:
        return _Subscription(self._subscribers)

    async def healthy(self) -> bool:
        return self.is_healthy

    def set_state(self, session: str, agent_id: str, **changes: Any) -> AgentState:
        """Change an agent (status, upstream, reason, ...) and announce it as ``modified``."""
        state = self.agents[agent_id]
        assert state.session == session
        state = dataclasses.replace(state, **changes)
        self.agents[agent_id] = state
        self._emit("modified", state)
        return state
