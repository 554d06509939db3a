"""The one interface both backends implement.

The HTTP API, the CLI and the tests talk to :class:`Backend`; nothing above it
knows whether agents are local processes or Kubernetes objects.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, AsyncIterator

from ..spec import AgentSpec


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


class Backend(abc.ABC):
    """Create, inspect, stream and delete agents."""

    mode: str = "abstract"

    async def start(self) -> None:
        """Connect, load or rebuild state, start watches. Called once before use."""

    async def close(self) -> None:
        """Stop background work. Agents keep running."""

    @abc.abstractmethod
    async def create(self, spec: AgentSpec) -> AgentState:
        """Start an agent. Idempotent for an equal spec; :class:`Conflict` for a different one."""

    @abc.abstractmethod
    async def get(self, session: str, agent_id: str) -> AgentState:
        """The agent's current state, or :class:`NotFound` (also when in another session)."""

    @abc.abstractmethod
    async def list(self, session: str | None = None, status: AgentStatus | None = None) -> list[AgentState]:
        """Agents, optionally of one session or status, ordered by creation time."""

    @abc.abstractmethod
    async def delete(self, session: str, agent_id: str, purge: bool = False) -> AgentState:
        """Stop and remove an agent; ``purge`` also deletes its data. :class:`NotFound` if absent."""

    @abc.abstractmethod
    async def logs(self, session: str, agent_id: str, tail_lines: int = 100) -> str:
        """The last lines of the agent's output."""

    @abc.abstractmethod
    def events(self) -> AsyncIterator[StatusEvent]:
        """Status changes from now on, for as long as the caller iterates."""

    async def healthy(self) -> bool:
        """True when the backend can do its work (the API server answers, ...)."""
        return True
