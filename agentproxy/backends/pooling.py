"""What both modes share of warm pools: the configured pools with the spec their members are
made from, the shape of a create, and the keeper interface :class:`~.base.Backend` claims through.

The decisions themselves are pure (:mod:`agentproxy.pools`); a mode keeps its members (local
processes, or objects in the cluster) behind :class:`PoolKeeper`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..pools import POOL_SESSION, Decision, Pool, parse_pools, prestarted_shape
from ..render import member_shape
from ..settings import Settings
from ..spec import AgentSpec, build_spec
from .errors import Unavailable


@dataclass(frozen=True)
class ConfiguredPool:
    """A pool of the settings and the shape of its members."""

    pool: Pool
    shape: str
    """What its members are made of (their label; see :func:`~agentproxy.pools.prestarted_shape`)."""
    create_shape: str = ""
    """The shape of a create it serves (its members' shape unless they are pre-started)."""

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def size(self) -> int:
        return self.pool.size


def spec_shape(spec: AgentSpec) -> str:
    """The shape of an agent (see :func:`agentproxy.pools.shape_of`)."""
    return member_shape(spec)


def member_spec(settings: Settings, pool: Pool, member_id: str) -> AgentSpec:
    """The spec a member of ``pool`` is made from: the pool's type, resources and profile, in
    :data:`~agentproxy.pools.POOL_SESSION`, owned by nobody, with no environment and no message."""
    from ..teams.config import parse_teams
    from ..teams.profiles import profile_settings
    profile = None
    if pool.profile is not None:
        profile = parse_teams(settings.teams, settings.agents.commands).profiles[pool.profile]
    spec = build_spec(profile_settings(settings, profile), POOL_SESSION, member_id, pool.agent,
                      resources=pool.resources)
    return dataclasses.replace(spec, profile=pool.profile)


def configured_pools(settings: Settings) -> tuple[ConfiguredPool, ...]:
    """The pools of ``settings`` (checked when the settings were loaded) with their shapes."""
    from ..teams.config import parse_teams
    profiles = parse_teams(settings.teams, settings.agents.commands).profiles
    pools = parse_pools(settings.pools, settings.agents.commands, settings.agents.default_type, profiles)
    out = []
    for p in pools:
        shape = spec_shape(member_spec(settings, p, "shape"))
        out.append(ConfiguredPool(p, prestarted_shape(shape) if p.prestart else shape, shape))
    return tuple(out)


def pool_shapes(pools: tuple[ConfiguredPool, ...]) -> Mapping[str, str]:
    """The shape of the creates each pool serves, by name (what :func:`agentproxy.pools.decide` takes)."""
    return {p.name: p.create_shape or p.shape for p in pools}


class MemberTaken(Unavailable):
    """The member a create took was claimed by another replica first (or is gone): the create
    takes another member, or goes cold."""


class PoolKeeper(Protocol):
    """A mode's pools, as :meth:`~.base.Backend.create` claims from them."""

    def take(self, spec: AgentSpec) -> tuple[Decision, Any]:
        """The decision for a create of ``spec`` naming no id and, when warm, the member taken
        for it (no other create can take it any more)."""

    def give_back(self, member: Any) -> None:
        """A member taken for a create that was refused before its claim began: ready again."""

    def discard(self, member: Any) -> None:
        """A member whose claim failed: removed, and replaced."""
