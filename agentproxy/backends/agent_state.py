"""What a backend knows about an agent, and the events that announce changes to it.

The pure data of the backend interface (:mod:`.base`, which re-exports it): the HTTP API,
the index and both backends read it; nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..spec import AgentSpec


class AgentStatus(enum.StrEnum):
    """Where an agent is in its life."""

    PENDING = "pending"      # accepted; nothing runs yet
    STARTING = "starting"    # scheduled / process started; agentapi not answering yet
    READY = "ready"          # agentapi answers GET /status
    FAILED = "failed"        # will not become ready without help; see reason and message
    STOPPING = "stopping"    # being deleted or suspended
    STOPPED = "stopped"      # exists but does not run
    SUSPENDED = "suspended"  # nothing runs, the data is kept; resumes on request
    WAITING_INPUT = "waiting_input"
    """Ready, and its program waits for its user (a permission question; see ``question``).
    Shown (:attr:`AgentState.shown_status`), never a backend's own status: the agent is ready
    for every purpose, requests reach it."""


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
    suspended: bool = False
    """Meant to be suspended: status ``stopping`` (reason ``Suspending``) until nothing runs,
    then ``suspended``."""
    last_active: datetime | None = None
    """When the agent was last seen in use: a proxied request, a new message, or becoming
    ready (idle culling counts from here; None when the backend has not seen it active)."""
    question: str | None = None
    """What the agent's program asks its user while it waits (see :mod:`agentproxy.waiting`)."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def session(self) -> str:
        return self.spec.session

    @property
    def shown_status(self) -> AgentStatus:
        """The status the API shows: ``waiting_input`` for a ready agent with a question."""
        if self.question and self.status is AgentStatus.READY:
            return AgentStatus.WAITING_INPUT
        return self.status


@dataclass(frozen=True)
class StatusEvent:
    """A change of an agent's state; ``deleted`` events carry the last state."""

    type: str  # "added", "modified" or "deleted"
    agent: AgentState
    position: Any = None
    """Where the event is in the backend's stream (an :class:`~.eventlog.Position`)."""
    id: str | None = None
    """The event's id in ``GET /events`` (see :mod:`.eventlog`)."""


def visible(state: AgentState) -> tuple[Any, ...]:
    """What an event announces: a change of anything else is no event."""
    return (state.status, state.reason, state.message, state.upstream, state.restarts, state.question,
            state.spec.group)  # who it is shared with: members' lists follow a share
