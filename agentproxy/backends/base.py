"""The one interface both backends implement.

The HTTP API, the CLI and the tests talk to :class:`Backend`; nothing above it
knows whether agents are local processes or Kubernetes objects.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator, Iterable

from ..spec import AgentSpec
from .events import EventHub


class AgentStatus(str, enum.Enum):
    """Where an agent is in its life."""

    PENDING = "pending"      # accepted; nothing runs yet
    STARTING = "starting"    # scheduled / process started; agentapi not answering yet
    READY = "ready"          # agentapi answers GET /status
    FAILED = "failed"        # will not become ready without help; see reason and message
    STOPPING = "stopping"    # being deleted
    STOPPED = "stopped"      # exists but does not run


@dataclass(frozen=True)
class AgentState:
    """What a backend knows about one agent at one moment."""

    spec: AgentSpec
    mode: str
    status: AgentStatus
    created_at: datetime
    reason: str | None = None
    message: str | None = None
    upstream: str | None = None
    """Base URL of the agent's agentapi server (``http://host:port``), once routable."""
    restarts: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    """Mode-specific facts: object names and namespace, or pid and port."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def session(self) -> str:
        return self.spec.session


@dataclass(frozen=True)
class StatusEvent:
    """A change of an agent's state; ``deleted`` events carry the last state."""

    type: str  # "added", "modified" or "deleted"
    agent: AgentState


class BackendError(Exception):
    """Base of the errors a backend raises; ``http_status`` is what the API answers."""

    http_status = 500
    code = "backend_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


class NotFound(BackendError):
    http_status, code = 404, "not_found"


class Conflict(BackendError):
    """The agent exists with a different spec, or a field is owned by someone else."""

    http_status, code = 409, "conflict"


class Rejected(BackendError):
    """The platform refused the request (admission, quota, validation): its message is passed on."""

    http_status, code = 422, "rejected"


class Forbidden(BackendError):
    """The backend's own credentials lack a permission; names the verb and resource."""

    http_status, code = 403, "forbidden"


class Unavailable(BackendError):
    """The platform cannot be reached (API server down, no ports left, ...)."""

    http_status, code = 503, "unavailable"


def check_same_spec(existing: AgentSpec, requested: AgentSpec) -> None:
    """Idempotency by spec fingerprint: a create of an existing id is a repeat when the specs are
    equal, else a :class:`Conflict` (agent ids are unique across sessions, as object names are
    in a namespace)."""
    if existing.fingerprint() != requested.fingerprint():
        if existing.session != requested.session:
            raise Conflict(f"agent id {requested.id!r} is already used in another session", field="id")
        raise different_spec(requested.id)


def different_spec(agent_id: str) -> Conflict:
    """The conflict of a create whose spec differs from the existing agent's."""
    return Conflict(f"agent {agent_id!r} already exists with a different spec", field="id")


def not_found(session: str, agent_id: str) -> NotFound:
    """The error of an agent that does not exist in ``session`` (an agent of another session does not)."""
    return NotFound(f"agent {agent_id!r} does not exist in session {session!r}")


def visible(state: AgentState) -> tuple[Any, ...]:
    """What an event announces: a change of anything else is no event."""
    return (state.status, state.reason, state.message, state.upstream, state.restarts)


class AgentLocks:
    """One lock per agent id, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, list[Any]] = {}  # agent id -> [lock, holders and waiters]

    @contextlib.asynccontextmanager
    async def hold(self, agent_id: str) -> AsyncIterator[None]:
        """Hold the agent's lock for the body of an ``async with``."""
        entry = self._entries.setdefault(agent_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[agent_id]

    def held(self, agent_id: str) -> bool:
        """True while a create or delete of the agent is under way."""
        entry = self._entries.get(agent_id)
        return entry is not None and entry[0].locked()


class Backend(abc.ABC):
    """Create, inspect, stream and delete agents.

    The rules every mode follows are kept here, once: idempotency by spec fingerprint
    (:func:`check_same_spec`), session scoping (an agent of another session does not
    exist), list filters and order (creation time, then id), one event per visible change
    (:meth:`publish`) and one lock per agent around creates and deletes. A mode implements
    only its primitives: :meth:`_state` and :meth:`_states` (what it knows now),
    :meth:`_create_new`, :meth:`_create_again`, :meth:`_delete` and :meth:`_logs` (its I/O),
    and may check that it can write at all in :meth:`_prepare`.
    """

    mode: str = "abstract"

    def __init__(self) -> None:
        self.hub: EventHub[StatusEvent] = EventHub()
        """Every subscriber of :meth:`events`."""
        self.locks = AgentLocks()
        """Held around each create and delete of one agent."""
        self._published: dict[str, AgentState] = {}

    async def start(self) -> None:
        """Connect, load or rebuild state, start watches. Called once before use."""

    async def close(self) -> None:
        """Stop background work. Agents keep running."""

    async def healthy(self) -> bool:
        """True when the backend can do its work (the API server answers, ...)."""
        return True

    # --- the contract ------------------------------------------------------------------------

    async def create(self, spec: AgentSpec) -> AgentState:
        """Start an agent. Idempotent for an equal spec; :class:`Conflict` for a different one."""
        prepared = await self._prepare(spec)
        async with self.locks.hold(spec.id):
            existing = self._state(spec.id)
            if existing is None:
                return await self._create_new(spec, prepared)
            check_same_spec(existing.spec, spec)
            return await self._create_again(existing, prepared)

    async def get(self, session: str, agent_id: str) -> AgentState:
        """The agent's current state, or :class:`NotFound` (also when in another session)."""
        state = self._state(agent_id)
        if state is None or state.session != session:
            raise not_found(session, agent_id)
        return state

    async def list(self, session: str | None = None, status: AgentStatus | None = None) -> list[AgentState]:
        """Agents, optionally of one session or status, ordered by creation time (then id)."""
        states = [s for s in self._states()
                  if (session is None or s.session == session) and (status is None or s.status == status)]
        return sorted(states, key=lambda s: (s.created_at, s.id))

    async def delete(self, session: str, agent_id: str, purge: bool = False) -> AgentState:
        """Stop and remove an agent; ``purge`` also deletes its data. :class:`NotFound` if absent."""
        await self._prepare(None)
        await self.get(session, agent_id)  # an unknown agent does not wait for a lock
        async with self.locks.hold(agent_id):
            state = await self.get(session, agent_id)  # a concurrent delete may have won
            return await self._delete(state, purge)

    async def logs(self, session: str, agent_id: str, tail_lines: int = 100) -> str:
        """The last lines of the agent's output."""
        return await self._logs(await self.get(session, agent_id), tail_lines)

    def events(self) -> AsyncIterator[StatusEvent]:
        """Status changes from now on, for as long as the caller iterates."""
        return self.hub.subscribe()

    # --- events --------------------------------------------------------------------------------

    def publish(self, state: AgentState) -> None:
        """Announce the agent's state: ``added`` the first time, then ``modified`` when it
        changed visibly (see :func:`visible`), nothing otherwise."""
        previous = self._published.get(state.id)
        if previous is not None and visible(previous) == visible(state):
            return
        self._published[state.id] = state
        self.hub.publish(StatusEvent("added" if previous is None else "modified", state))

    def publish_gone(self, agent_id: str, final: AgentState | None = None) -> None:
        """Announce that the agent is gone (``deleted``), with ``final`` or its last announced state."""
        previous = self._published.pop(agent_id, None)
        if final is not None or previous is not None:
            self.hub.publish(StatusEvent("deleted", final or previous))  # type: ignore[arg-type]

    # --- what each mode implements -------------------------------------------------------------

    async def _prepare(self, spec: AgentSpec | None) -> Any:
        """Checks before a create (``spec``) or delete (None) waits for the agent's lock: raise
        when the backend cannot write now. What it returns is handed to the create."""
        return None

    @abc.abstractmethod
    def _state(self, agent_id: str) -> AgentState | None:
        """The agent's state as the backend knows it now (any session), None when it does not exist."""

    @abc.abstractmethod
    def _states(self) -> Iterable[AgentState]:
        """Every agent's state as the backend knows it now."""

    @abc.abstractmethod
    async def _create_new(self, spec: AgentSpec, prepared: Any) -> AgentState:
        """Start an agent of an unused id (the agent's lock is held)."""

    async def _create_again(self, existing: AgentState, prepared: Any) -> AgentState:
        """A create of an agent that exists with an equal spec (the agent's lock is held)."""
        return existing

    @abc.abstractmethod
    async def _delete(self, state: AgentState, purge: bool) -> AgentState:
        """Stop and remove the agent of ``state`` (the agent's lock is held); its last state."""

    @abc.abstractmethod
    async def _logs(self, state: AgentState, tail_lines: int) -> str:
        """The last lines of the output of the agent of ``state``."""
