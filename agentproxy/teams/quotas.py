"""Quotas per user and per group: agents held, agents running, agents being created.

The counts are derived from the agents the backend knows (in k8s mode: the cluster's objects, so
every replica counts the same), plus the creates this replica has under way and not yet seen as
an agent. "Creating" is an agent that is pending or starting: a create is in flight until its
agent first answers. Pure: :func:`count` and :func:`check`; the HTTP layer holds a lock per
caller around check and create so that two creates of one caller are not both let through.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..backends.agent_state import AgentState, AgentStatus
from ..spec import AgentSpec
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

    def holds(self, spec: AgentSpec) -> bool:
        """True when the agent of ``spec`` counts against this scope."""
        if self.kind == "user":
            return spec.owner == self.name
        return spec.owner in self.members or spec.group == self.name


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


def count(scope: Scope, states: Iterable[AgentState], in_flight: Iterable[AgentSpec] = ()) -> Usage:
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
    for spec in in_flight:
        if spec.id not in seen and scope.holds(spec):
            agents, running, creating = agents + 1, running + 1, creating + 1
    return Usage(agents, running, creating)


def check(scoped: list[tuple[Scope, Quota, str]], states: list[AgentState], in_flight: list[AgentSpec], *,
          new_agent: bool, starts: bool) -> None:
    """Raise :class:`QuotaExceeded` when one more agent (``new_agent``) or one more running
    agent (``starts``: a create or a resume) would break a quota of ``scoped``."""
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
