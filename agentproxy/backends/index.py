"""Agents by session and by owner, so that a list costs what it returns.

:class:`Membership` keeps the ids of the agents of each session and each owner
(an API key's name, None for agents made without keys). :class:`StateIndex` adds
each agent's current state, for a mode that learns of every change of an agent
as it happens (Kubernetes, through its watches): a list is then a read of the
states it returns, with nothing derived again. Both are plain data structures,
changed only by their owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..spec import AgentSpec
    from .agent_state import AgentState

ANY_OWNER: Any = object()
"""For :meth:`Membership.ids`: agents of every owner (None is an owner: agents made without keys)."""


class Membership:
    """The ids of the agents of each session and each owner."""

    def __init__(self) -> None:
        self._specs: dict[str, AgentSpec] = {}
        self._by_session: dict[str, set[str]] = {}
        self._by_owner: dict[str | None, set[str]] = {}

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._specs

    def add(self, spec: AgentSpec) -> None:
        """Count the agent of ``spec`` in its session and owner (again, when they changed)."""
        previous = self._specs.get(spec.id)
        if previous is not None:
            if previous.session == spec.session and previous.owner == spec.owner:
                self._specs[spec.id] = spec
                return
            self.discard(spec.id)
        self._specs[spec.id] = spec
        self._by_session.setdefault(spec.session, set()).add(spec.id)
        self._by_owner.setdefault(spec.owner, set()).add(spec.id)

    def discard(self, agent_id: str) -> None:
        """Forget the agent (nothing happens when it is not counted)."""
        spec = self._specs.pop(agent_id, None)
        if spec is None:
            return
        _remove(self._by_session, spec.session, agent_id)
        _remove(self._by_owner, spec.owner, agent_id)

    def ids(self, session: str | None = None, owner: Any = ANY_OWNER) -> Iterable[str]:
        """Ids of the agents of ``session`` (every session when None) owned by ``owner``
        (every owner by default), in no particular order; costs what it returns (the smaller
        of the session's and the owner's agents)."""
        if session is None and owner is ANY_OWNER:
            return self._specs.keys()
        if owner is ANY_OWNER and session is not None:  # (a session of None is the case above)
            return self._by_session.get(session, ())
        owned = self._by_owner.get(owner, set())
        if session is None:
            return owned
        in_session = self._by_session.get(session, set())
        small, large = (in_session, owned) if len(in_session) <= len(owned) else (owned, in_session)
        return [i for i in small if i in large]

    def count_session(self, session: str) -> int:
        """How many agents ``session`` holds."""
        return len(self._by_session.get(session, ()))

    def count_owner(self, owner: str | None) -> int:
        """How many agents ``owner`` holds."""
        return len(self._by_owner.get(owner, ()))

    def specs(self) -> Iterable[AgentSpec]:
        """Every counted agent's spec."""
        return self._specs.values()


class StateIndex(Membership):
    """:class:`Membership` with each agent's current state, replaced whole on every change
    (states are immutable: a reader may keep one, and an unchanged agent's state stays the
    same object, which lets a reader cache what it makes of it)."""

    def __init__(self) -> None:
        super().__init__()
        self._states: dict[str, AgentState] = {}
        self._order: list[str] | None = None
        """Every id in list order (creation time, then id), made again only after an agent came,
        went or changed its creation time: a list of thousands is not sorted on every read."""
        self._ordered: list[AgentState] | None = None
        """Every state in that order: a change in place replaces its entry, an agent that came,
        went or changed its creation time makes it again."""
        self._position: dict[str, int] = {}
        """Each id's position in :attr:`_order`."""

    def put(self, state: AgentState) -> None:
        """The agent's state from now on."""
        previous = self._states.get(state.id)
        self._states[state.id] = state
        self.add(state.spec)
        if previous is None or previous.created_at != state.created_at:
            self._order = self._ordered = None
        elif self._ordered is not None:  # the same place in the list: thousands are not gathered again
            self._ordered[self._position[state.id]] = state

    def remove(self, agent_id: str) -> None:
        """The agent is gone."""
        if self._states.pop(agent_id, None) is not None:
            self._order = self._ordered = None
        self.discard(agent_id)

    def ordered(self) -> list[AgentState]:
        """Every agent's state ordered by creation time, then id (as lists show them); a new
        list, the caller's to change."""
        if self._ordered is None:
            states = self._states
            if self._order is None:
                self._order = sorted(states, key=lambda i: (states[i].created_at, i))
                self._position = {agent_id: n for n, agent_id in enumerate(self._order)}
            self._ordered = [states[i] for i in self._order]
        return list(self._ordered)

    def get(self, agent_id: str) -> AgentState | None:
        """The agent's state, None when it is not indexed."""
        return self._states.get(agent_id)

    def states(self, session: str | None = None, owner: Any = ANY_OWNER) -> list[AgentState]:
        """The states of the agents :meth:`Membership.ids` selects, in no particular order."""
        states = self._states
        return [states[i] for i in self.ids(session, owner)]


def _remove(groups: dict[Any, set[str]], key: Any, agent_id: str) -> None:
    members = groups.get(key)
    if members is not None:
        members.discard(agent_id)
        if not members:
            del groups[key]
