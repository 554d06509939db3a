"""Who a session belongs to: the owner of its oldest agent.

Sessions have no object of their own; they are the agents that name them. The owner
(an API key's name) of the first agent created in a session owns it as long as it has
agents, and only that owner may add agents to it, so that no other owner can fill it up
to ``agents.max_per_session`` or learn from a refusal what it holds. Admins and shared
sessions (the agentapi-proxy layer's one session, where every agent is owned on its own)
are let in by the caller. The owner is read from the agents themselves (the local state
file, the labels of the Kubernetes objects), so it survives a restart of the proxy.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..spec import AgentSpec
from .agent_state import AgentState
from .errors import SessionTaken

FREE = object()
"""What :func:`session_owner` answers for a session without agents."""


def session_owner(states: Iterable[AgentState], creating: Iterable[AgentSpec]) -> object:
    """The owner of a session (None: agents made without keys) from the states of its agents,
    else from the creates under way in it (in the order they began); :data:`FREE` when it has
    neither."""
    oldest = min(states, key=lambda s: (s.created_at, s.id), default=None)
    if oldest is not None:
        return oldest.spec.owner
    for spec in creating:
        return spec.owner
    return FREE


def check_session(spec: AgentSpec, states: Iterable[AgentState], creating: Iterable[AgentSpec]) -> None:
    """Raise :class:`SessionTaken` when ``spec``'s session belongs to another owner than ``spec``'s.

    The error says only that the session is not the caller's: not whose it is, nor what is in it."""
    owner = session_owner(states, (c for c in creating if c.session == spec.session and c.id != spec.id))
    if owner is not FREE and owner != spec.owner:
        raise SessionTaken(f"session {spec.session!r} belongs to another owner; create the agent in a session "
                           "of your own", field="session")
