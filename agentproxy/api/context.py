"""What the handlers of one application share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..backends.base import AgentState, Backend, NotFound
from ..settings import Settings
from ..teams.config import Teams
from .auth import Authenticator, Principal
from .culling import TrafficClock
from .listing import AgentTexts
from .metrics import Metrics
from .relay.pool import UpstreamPool
from .waking import Waker


@dataclass
class ApiContext:
    """Settings, backend, key checks, metrics and the upstream HTTP client of one app."""

    settings: Settings
    backend: Backend
    auth: Authenticator
    metrics: Metrics
    heartbeat_interval: float = 15.0
    """Seconds between comment lines on an idle ``/events`` stream."""
    client: UpstreamPool | None = field(default=None, repr=False)
    """The connections of every upstream request; open between app startup and cleanup."""
    agent_id_checks: list[Callable[[str], None]] = field(default_factory=list)
    """Further rules for the id of a new agent; each raises :class:`~agentproxy.spec.SpecError` to refuse it."""
    traffic: TrafficClock = field(default_factory=lambda: TrafficClock(enabled=False))
    """Each proxied request is noted here for idle culling (when it is on)."""
    waker: Waker | None = field(default=None, repr=False)
    """Resumes a suspended agent on its first proxied request (see :mod:`.waking`)."""
    agent_texts: AgentTexts = field(default_factory=AgentTexts, repr=False)
    """Each agent's JSON, made again only when its state changes (see :mod:`.listing`)."""
    teams: Teams = field(default_factory=Teams)
    """Groups, profiles, quotas and the audit log (the ``teams`` settings)."""
    shared_sessions: set[str] = field(default_factory=set)
    """Sessions every key may create agents in (each agent still seen by its owner alone); any
    other session belongs to the owner of its oldest agent (see :mod:`~agentproxy.backends.ownership`)."""

    def may_join(self, principal: Principal, session: str) -> bool:
        """True when ``principal`` may create agents in ``session`` whoever owns it: admins, and
        every caller in a shared session."""
        return principal.admin or session in self.shared_sessions

    def __post_init__(self) -> None:
        from ..teams.http import QuotaGate  # it imports the HTTP layer's errors
        self.quotas = QuotaGate(self.teams, self.backend)
        """Quotas per user and group, checked around creates and resumes."""
        if self.waker is None:
            self.waker = Waker(self.backend, self.settings.agents.resume_wait, self.quotas)

    async def visible_agent(self, principal: Principal, session: str, agent_id: str) -> AgentState:
        """The agent, or :class:`NotFound` when it is absent or belongs to another key."""
        try:
            state: AgentState | None = await self.backend.get(session, agent_id)
        except NotFound:
            state = None
        if state is None or not principal.can_see(state):
            raise NotFound(f"agent {agent_id!r} not found in session {session!r}")
        return state
