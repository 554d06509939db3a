"""Quotas per user and per group: agents held, agents running, agents being created.

The counts are derived from the agents the backend knows (in k8s mode: the cluster's objects, so
every replica counts the same), plus the creates this replica has under way and not yet seen as an
agent, plus (k8s mode) the creates every replica reserved in the quota ledger in the last moments
(:class:`Reserved`), which a replica's cache may not show yet. "Creating" is an agent that is
pending or starting: a create is in flight until its agent first answers. Pure: :func:`count` and
:func:`check`; the HTTP layer holds a lock per caller around check and create so that two creates of
one caller are not both let through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..backends.agent_state import AgentState, AgentStatus
from .config import Quota, Teams

CREATING = frozenset({AgentStatus.PENDING, AgentStatus.STARTING})
NOT_RUNNING = frozenset({AgentStatus.SUSPENDED, AgentStatus.STOPPED, AgentStatus.STOPPING})
RETRY_AFTER = 5.0
"""Seconds a create refused for creates in flight may wait: agents start in seconds."""


@dataclass(frozen=True)
class Usage:
    """What a user or group holds."""

    agents: int = 0
    running: int = 0
    creating: int = 0

    def to_dict(self) -> dict[str, int]:
        """As JSON."""
        return {"agents": self.agents, "running": self.running, "creating": self.creating}


@dataclass(frozen=True)
class Scope:
    """Whom a quota is of: a user, or a group (its members and the agents shared with it)."""

    kind: str
    name: str
    members: frozenset[str]

    def holds(self, spec: Held) -> bool:
        """True when the agent of ``spec`` counts against this scope."""
        if self.kind == "user":
            return spec.owner == self.name
        return spec.owner in self.members or spec.group == self.name


class Held(Protocol):
    """What a quota counts of an agent: its id, owner and group (a spec, or a reservation)."""

    @property
    def id(self) -> str: ...
    @property
    def owner(self) -> str | None: ...
    @property
    def group(self) -> str | None: ...


@dataclass(frozen=True)
class Reserved:
    """A create another replica (or this one) let through and reserved in the quota ledger, at
    ``at`` (seconds since the epoch), until its agent shows among the backend's."""

    id: str
    owner: str | None
    group: str | None
    at: float

    def to_dict(self) -> dict[str, Any]:
        """As JSON."""
        return {"id": self.id, "owner": self.owner, "group": self.group, "at": round(self.at, 3)}


RESERVATION_SECONDS = 120.0
"""How long a reservation counts: by then its agent is among the backend's (or its create failed)."""


def parse_reservations(text: str | None, now: float) -> list[Reserved]:
    """The reservations of a ledger's text that have not expired (anything unreadable: none)."""
    try:
        raw = json.loads(text) if text else []
    except ValueError:
        return []
    out = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
            continue
        at = entry.get("at")
        if not isinstance(at, (int, float)) or not now - RESERVATION_SECONDS <= at <= now + RESERVATION_SECONDS:
            continue
        owner, group = entry.get("owner"), entry.get("group")
        out.append(Reserved(entry["id"], owner if isinstance(owner, str) else None,
                            group if isinstance(group, str) else None, float(at)))
    return out


def dump_reservations(reservations: Iterable[Reserved]) -> str:
    """A ledger's text."""
    return json.dumps([r.to_dict() for r in reservations], separators=(",", ":"))


class QuotaExceeded(Exception):
    """One more agent would break a quota; ``path`` names it (``users.alice.running``)."""

    def __init__(self, path: str, message: str, retry_after: float | None) -> None:
        self.path = path
        self.retry_after = retry_after
        super().__init__(message)


def scopes(teams: Teams, user: str | None, groups: Iterable[str]) -> list[tuple[Scope, Quota, str]]:
    """The scopes of a caller with their quotas and the settings path of each (user first)."""
    out: list[tuple[Scope, Quota, str]] = []
    if user is not None:
        named = user in teams.quotas.users
        out.append((Scope("user", user, frozenset({user})), teams.quotas.of_user(user),
                    f"teams.quotas.users.{user}" if named else "teams.quotas.default"))
    for group in sorted(groups):
        quota = teams.quotas.groups.get(group)
        if quota is not None:
            members = teams.members.get(group, frozenset()) | ({user} if user is not None else set())
            out.append((Scope("group", group, frozenset(members)), quota, f"teams.quotas.groups.{group}"))
    return out


def count(scope: Scope, states: Iterable[AgentState], in_flight: Iterable[Held] = ()) -> Usage:
    """What ``scope`` holds among ``states`` and the creates ``in_flight`` (not yet among them)."""
    agents = running = creating = 0
    seen = set()
    for state in states:
        seen.add(state.id)
        if not scope.holds(state.spec):
            continue
        agents += 1
        running += state.status not in NOT_RUNNING
        creating += state.status in CREATING
    counted = set(seen)
    for spec in in_flight:
        if spec.id not in counted and scope.holds(spec):
            counted.add(spec.id)  # a create of this replica that is also in the ledger counts once
            agents, running, creating = agents + 1, running + 1, creating + 1
    return Usage(agents, running, creating)


def check(scoped: list[tuple[Scope, Quota, str]], states: list[AgentState], in_flight: Iterable[Held], *,
          new_agent: bool, starts: bool) -> None:
    """Raise :class:`QuotaExceeded` when one more agent (``new_agent``) or one more running
    agent (``starts``: a create or a resume) would break a quota of ``scoped``."""
    in_flight = list(in_flight)
    for scope, quota, path in scoped:
        usage = count(scope, states, in_flight)
        who = f"{scope.kind} {scope.name!r}"
        if new_agent and quota.agents and usage.agents >= quota.agents:
            raise QuotaExceeded(f"{path}.agents", f"quota {path}.agents: {who} holds {usage.agents} agents, "
                                f"the most allowed ({quota.agents}); delete one first", None)
        if starts and quota.running and usage.running >= quota.running:
            raise QuotaExceeded(f"{path}.running", f"quota {path}.running: {who} runs {usage.running} agents, "
                                f"the most allowed ({quota.running}); suspend or delete one first", None)
        if new_agent and quota.creating and usage.creating >= quota.creating:
            raise QuotaExceeded(f"{path}.creating", f"quota {path}.creating: {who} has {usage.creating} agents "
                                f"starting, the most allowed ({quota.creating}); try again once they are ready",
                                RETRY_AFTER)
