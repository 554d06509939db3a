"""An in-memory :class:`~agentproxy.backends.base.Backend` for the tests of the HTTP layer.

It implements only the primitives of the interface; the rules (idempotency by
spec fingerprint, session scoping, list order, events) are the base class's,
the same as the real backends', and ``tests/contract`` runs the same
behavioural tests against it and them. Nothing runs: an agent is ``ready`` at
once when the backend was given an upstream URL, ``pending`` otherwise; tests
move agents with :meth:`set_state`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from agentproxy.backends.base import AgentState, AgentStatus, Backend, BackendError
from agentproxy.backends.suspension import SUSPENDED_REASON, AgentActivity, Suspension
from agentproxy.spec import AgentSpec

_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


class MemoryBackend(Backend):
    """Agents in a dict; events to every subscriber."""

    mode = "memory"

    def __init__(self, upstream: str | None = None) -> None:
        super().__init__()
        self.upstream = upstream
        """Base URL every new agent's API is at; agents are ready at once when it is set."""
        self.agents: dict[str, AgentState] = {}
        self.data: set[str] = set()
        """Ids whose data is kept (the stand-in of a work directory or volume): kept on delete, gone on purge."""
        self.log_lines: dict[str, list[str]] = {}
        self.is_healthy = True
        self.fail_next: BackendError | None = None
        """Raised (once) by the next create or delete, to stand for a platform failure."""
        self.deleted: list[tuple[str, str, bool]] = []
        self.activities: dict[str, AgentActivity] = {}
        """What :meth:`activity` answers for an agent (nothing known, unless set)."""
        self.started = self.closed = False
        self._clock = itertools.count()

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True
        self.hub.close()

    async def healthy(self) -> bool:
        return self.is_healthy

    @property
    def subscribers(self) -> int:
        """How many event streams are open."""
        return self.hub.subscribers

    def _raise_injected(self) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error

    # --- the primitives -----------------------------------------------------------------------

    def _state(self, agent_id: str) -> AgentState | None:
        return self.agents.get(agent_id)

    def _states(self) -> Iterable[AgentState]:
        return list(self.agents.values())

    async def _prepare(self, spec: AgentSpec | None) -> None:
        if spec is not None:
            self._raise_injected()

    async def _create_new(self, spec: AgentSpec, prepared: Any) -> AgentState:
        ready = self.upstream is not None
        state = AgentState(
            spec=spec, mode=self.mode, status=AgentStatus.READY if ready else AgentStatus.PENDING,
            created_at=_EPOCH + timedelta(seconds=next(self._clock)), upstream=self.upstream,
            details={"store": "memory"},
        )
        self.agents[spec.id] = state
        self.data.add(spec.id)
        self.log_lines[spec.id] = [f"agent {spec.id} line {i}" for i in range(1, 201)]
        self.publish(state)
        return state

    async def _delete(self, state: AgentState, purge: bool) -> AgentState:
        self._raise_injected()
        del self.agents[state.id]
        self.log_lines.pop(state.id, None)
        if purge:
            self.data.discard(state.id)
        self.deleted.append((state.session, state.id, purge))
        final = dataclasses.replace(state, status=AgentStatus.STOPPED, upstream=None)
        self.publish_gone(state.id, final)
        return final

    async def _suspend(self, state: AgentState, suspension: Suspension, guard: Any) -> tuple[AgentState, bool]:
        self._raise_injected()
        suspended = dataclasses.replace(state, status=AgentStatus.SUSPENDED, upstream=None, suspended=True,
                                        reason=SUSPENDED_REASON, message=suspension.message())
        self.agents[state.id] = suspended
        self.publish(suspended)
        return suspended, True

    async def _share(self, state: AgentState, spec: Any) -> AgentState:
        self._raise_injected()
        shared = dataclasses.replace(state, spec=spec)
        self.agents[state.id] = shared
        return shared

    async def _resume(self, state: AgentState) -> tuple[AgentState, bool]:
        self._raise_injected()
        ready = self.upstream is not None
        resumed = dataclasses.replace(state, status=AgentStatus.READY if ready else AgentStatus.PENDING,
                                      upstream=self.upstream, suspended=False, reason=None, message=None)
        self.agents[state.id] = resumed
        self.publish(resumed)
        return resumed, True

    async def _record_activity(self, state: AgentState, when: datetime) -> None:
        self.agents[state.id] = dataclasses.replace(self.agents[state.id], last_active=when)

    async def _activity(self, state: AgentState) -> AgentActivity:
        return self.activities.get(state.id, AgentActivity())

    async def _logs(self, state: AgentState, tail_lines: int) -> str:
        lines = self.log_lines.get(state.id, [])
        return "".join(f"{line}\n" for line in lines[-tail_lines:])

    # --- for tests ----------------------------------------------------------------------------

    def set_state(self, session: str, agent_id: str, **changes: Any) -> AgentState:
        """Change an agent (status, upstream, reason, ...) and announce it when that is visible."""
        state = self.agents[agent_id]
        assert state.session == session
        state = dataclasses.replace(state, **changes)
        self.agents[agent_id] = state
        self.publish(state)
        return state
