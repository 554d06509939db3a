"""Warm pools: agents made ahead of time and bound to their owner when a create claims one.

A pool (``pools:`` in the settings, a list of ``{name, size, agent, resources, profile}``)
keeps ``size`` members: agents of the pool's shape whose launcher waits for its binding
(see :mod:`agentproxy.launcher`). A create that names no id and has the pool's shape takes a
ready member: the member's id becomes the agent's id, and its environment, credentials and
first message are bound then, without a restart. Everything else is created cold, as before.

This module is pure: the settings' rules (:func:`parse_pools`), what makes a member
(:func:`member_labels`, :func:`shape_of`), which create a pool serves (:func:`decide`) and
what a pool needs to be whole again (:func:`refill_plan`). The backends do the I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .quantity import QUANTITY_RULE, parse_quantity

POOL_FIELDS = ("name", "size", "agent", "resources", "profile", "prestart")
"""The fields a pool may have."""
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "storage_size")
MAX_POOL_SIZE = 100
"""At most this many members per pool: a pool holds resources while nobody uses them."""
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NAME_MAX = 30
NAME_RULE = f"must be 1 to {NAME_MAX} lowercase letters, digits and '-', starting and ending with a letter or digit"

LABEL_POOL = "agentproxy.io/pool"
"""The label of a pool member: the pool's name (removed when the member is claimed)."""
LABEL_SHAPE = "agentproxy.io/pool-shape"
"""The label of a pool member: the :func:`shape_of` its pool had when it was made."""
POOL_SESSION = "agentproxy-pool"
"""The session a member belongs to until it is claimed: no user's (a session id a client can
use as well, but members are never listed and a create never lands in it through a pool)."""

WARM = "warm"
"""An agent served by a pool member."""
COLD = "cold"
"""An agent created from nothing, as without pools."""

# Member states (the ``state`` label of ``agentproxy_pool_members``).
WARMING = "warming"
"""Made, its launcher not waiting for a binding yet."""
READY = "ready"
"""Its launcher waits for a binding: a claim can take it."""
FAILED = "failed"
"""It did not come up; it is replaced."""
STALE = "stale"
"""Made for an earlier shape of its pool (its settings changed): no claim takes it, and it is
replaced (counted in the metrics only)."""
MEMBER_STATES = (WARMING, READY, FAILED, STALE)


class PoolsError(ValueError):
    """A ``pools`` setting breaks a rule; ``path`` is its dotted name (``pools.0.size``)."""

    def __init__(self, path: str, rule: str) -> None:
        self.path = path
        self.rule = rule
        super().__init__(f"{path}: {rule}")


@dataclass(frozen=True)
class Pool:
    """One pool as the settings describe it."""

    name: str
    size: int
    agent: str
    """The agent type of its members (``agents.commands``)."""
    resources: Mapping[str, str] = field(default_factory=dict)
    """Resources its members get beyond ``k8s_mode.resources``; a create must ask for the same."""
    profile: str | None = None
    """The profile (``teams.profiles``) its members are made with; a create must name it too."""
    prestart: bool = False
    """Its members run their program before they are claimed; a claim brings the first message
    and Claude Code's key alone (see :mod:`agentproxy.launcher`), and the owner's other
    variables reach the program at its next start. Local mode pre-starts no Claude Code member
    (its home is prepared by the proxy at the claim)."""


@dataclass(frozen=True)
class Member:
    """What a refill plan needs to know of one pool member."""

    id: str
    pool: str
    shape: str
    state: str


@dataclass(frozen=True)
class Decision:
    """Whether a create is served by a pool: ``start`` is :data:`WARM` or :data:`COLD`, ``pool``
    the pool that served it (or would have, when it was empty), ``why`` a short reason."""

    start: str
    pool: str | None
    why: str


@dataclass(frozen=True)
class RefillPlan:
    """What makes a pool whole: how many members to make, which to remove (stale shape,
    failed, or beyond its size)."""

    make: int
    remove: tuple[str, ...] = ()


def parse_pools(raw: Any, agent_types: Iterable[str], default_type: str,
                profiles: Iterable[str] = ()) -> tuple[Pool, ...]:
    """The pools of the ``pools`` setting (None: no pools), or :class:`PoolsError` naming the
    field and the rule. ``agent_types`` are the configured ``agents.commands``, ``profiles`` the
    names of ``teams.profiles``."""
    raw = _plain(raw)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PoolsError("pools", "must be a list of pools such as [{name: echo, size: 5, agent: echo}]")
    types, known_profiles = set(agent_types), set(profiles)
    pools: list[Pool] = []
    for index, item in enumerate(raw):
        path = f"pools.{index}"
        if not isinstance(item, Mapping):
            raise PoolsError(path, f"must be a mapping with {', '.join(POOL_FIELDS)}")
        unknown = sorted(str(k) for k in item if k not in POOL_FIELDS)
        if unknown:
            raise PoolsError(f"{path}.{unknown[0]}", f"unknown field; a pool may have {', '.join(POOL_FIELDS)}")
        name = item.get("name")
        if not isinstance(name, str) or len(name) > NAME_MAX or not NAME.fullmatch(name):
            raise PoolsError(f"{path}.name", NAME_RULE)
        if any(p.name == name for p in pools):
            raise PoolsError(f"{path}.name", f"{name!r} names another pool already; pool names must be unique")
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_POOL_SIZE:
            raise PoolsError(f"{path}.size", f"must be a whole number from 0 to {MAX_POOL_SIZE}")
        agent = item.get("agent", default_type)
        if agent not in types:
            raise PoolsError(f"{path}.agent", f"must be one of the configured agent types: {', '.join(sorted(types))}")
        resources = _resources(item.get("resources"), f"{path}.resources")
        profile = item.get("profile")
        if profile is not None and profile not in known_profiles:
            raise PoolsError(f"{path}.profile", f"must name a profile of teams.profiles "
                             f"({', '.join(sorted(known_profiles)) or 'none configured'})")
        prestart = item.get("prestart", False)
        if not isinstance(prestart, bool):
            raise PoolsError(f"{path}.prestart", "must be true or false")
        pools.append(Pool(name=name, size=size, agent=agent, resources=resources, profile=profile, prestart=prestart))
    return tuple(pools)


def _resources(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PoolsError(path, f"must be a mapping of {', '.join(RESOURCE_KEYS)}")
    out: dict[str, str] = {}
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            raise PoolsError(f"{path}.{key}", f"is not a resource; use {', '.join(RESOURCE_KEYS)}")
        if isinstance(amount, bool) or not isinstance(amount, (str, int, float)):
            raise PoolsError(f"{path}.{key}", QUANTITY_RULE)
        try:
            positive = parse_quantity(str(amount)) > 0
        except ValueError:
            raise PoolsError(f"{path}.{key}", QUANTITY_RULE) from None
        if not positive:
            raise PoolsError(f"{path}.{key}", "must be positive")
        out[str(key)] = str(amount)
    return out


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain lists and dicts."""
    if type(value).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf
        return OmegaConf.to_container(value)
    return value


def shape_of(agent: str, command: Sequence[str], resources: Mapping[str, str], profile: str | None) -> str:
    """The fingerprint of what a member is made of: its type, its command, its resources (the
    defaults included) and its profile. A create of another shape is not served by the pool, and
    members of an old shape (the settings changed) are replaced."""
    text = json.dumps({"agent": agent, "command": list(command), "resources": dict(resources), "profile": profile},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prestarted_shape(shape: str) -> str:
    """The shape of the members of a pool with ``prestart`` (a create's shape is ``shape``):
    a member made before the setting changed is replaced, since it runs otherwise."""
    return hashlib.sha256(f"{shape}:prestart".encode()).hexdigest()[:16]


def member_labels(pool: str, shape: str) -> dict[str, str]:
    """The labels that mark a pool member (Kubernetes objects; local mode keeps the same in its
    state file)."""
    return {LABEL_POOL: pool, LABEL_SHAPE: shape}


def decide(*, names_id: bool, shape: str, pool_shapes: Mapping[str, str], ready: Mapping[str, int]) -> Decision:
    """Which pool serves a create: none when it names an id (an id names an agent of its own,
    made as asked), or when no pool has its ``shape``, or when that pool has no ready member
    (``ready``: ready members by pool). ``pool_shapes``: each pool's current shape."""
    if names_id:
        return Decision(COLD, None, "the create names an id")
    pool = next((name for name, s in pool_shapes.items() if s == shape), None)
    if pool is None:
        return Decision(COLD, None, "no pool has this shape")
    if ready.get(pool, 0) <= 0:
        return Decision(COLD, pool, f"pool {pool!r} has no ready member")
    return Decision(WARM, pool, f"claimed from pool {pool!r}")


def refill_plan(size: int, shape: str, members: Iterable[Member]) -> RefillPlan:
    """What makes a pool of ``size`` members of ``shape`` whole: members of another shape and
    failed ones go, the newest beyond ``size`` go (warming ones before ready ones), and as many
    are made as are missing."""
    remove: list[str] = []
    kept: list[Member] = []
    for member in members:
        if member.shape != shape or member.state == FAILED:
            remove.append(member.id)
        else:
            kept.append(member)
    if len(kept) > size:
        # Ready members are worth more than warming ones: the extra warming ones go first.
        kept.sort(key=lambda m: (m.state != READY, m.id))
        remove.extend(m.id for m in kept[size:])
        kept = kept[:size]
    return RefillPlan(make=size - len(kept), remove=tuple(remove))


def counts(members: Iterable[Member], shapes: Mapping[str, str]) -> dict[tuple[str, str], int]:
    """Members by (pool, state), every state of every pool of ``shapes`` (its current shape by
    name) present, 0 when none: ``agentproxy_pool_members{pool,state}``. A member of another
    shape than its pool's is :data:`STALE` whatever it is doing: no claim takes it."""
    out = {(pool, state): 0 for pool in shapes for state in MEMBER_STATES}
    for member in members:
        stale = member.pool in shapes and member.shape != shapes[member.pool]
        key = (member.pool, STALE if stale else member.state)
        out[key] = out.get(key, 0) + 1
    return out
