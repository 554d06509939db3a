"""The ``teams`` settings, parsed and checked once: groups, profiles, quotas, the audit log.

Every rule broken is a :class:`TeamsError` naming the dotted setting and the rule, which the
settings loader reports like any other setting's error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..apikeys import NAME_RULE, name_problem
from ..quantity import QUANTITY_RULE, parse_quantity

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME_RULE = "must be a letter or '_' followed by letters, digits or '_'"
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "storage_size")
PROFILE_FIELDS = ("description", "agent", "image", "resources", "env", "idle_timeout", "instructions",
                  "mcp_servers", "credentials", "groups")
QUOTA_FIELDS = ("agents", "running", "creating")


class TeamsError(ValueError):
    """A ``teams`` setting breaks a rule; ``path`` is its dotted name."""

    def __init__(self, path: str, rule: str) -> None:
        self.path = path
        self.rule = rule
        super().__init__(f"{path}: {rule}")


@dataclass(frozen=True)
class Profile:
    """One named agent profile: what an agent created with it is made of, and who may use it."""

    name: str
    description: str = ""
    agent: str | None = None
    image: str | None = None
    resources: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    idle_timeout: float | None = None
    instructions: str | None = None
    mcp_servers: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    """Environment variable of the agent to the credential (of its owner, else of its group) it holds."""
    groups: frozenset[str] | None = None
    """Groups whose members may use it; None: everyone."""

    def allows(self, groups: frozenset[str], admin: bool = False) -> bool:
        """True when a caller in ``groups`` (an admin: always) may create agents with it."""
        return admin or self.groups is None or bool(self.groups & groups)

    def summary(self) -> dict[str, Any]:
        """What ``GET /profiles`` shows of it: no environment values, no instructions text."""
        return {"name": self.name, "description": self.description, "agent": self.agent, "image": self.image,
                "resources": dict(self.resources), "idle_timeout": self.idle_timeout,
                "env": sorted(self.env), "credentials": sorted(set(self.credentials.values())),
                "mcp_servers": sorted(self.mcp_servers), "instructions": self.instructions is not None,
                "groups": None if self.groups is None else sorted(self.groups)}


@dataclass(frozen=True)
class Quota:
    """Limits of one user or group; 0: no limit."""

    agents: int = 0
    """Agents held (running or suspended)."""
    running: int = 0
    """Agents not suspended."""
    creating: int = 0
    """Creates under way at once."""

    def to_dict(self) -> dict[str, int]:
        """As JSON."""
        return {"agents": self.agents, "running": self.running, "creating": self.creating}


@dataclass(frozen=True)
class Quotas:
    """Quotas by user and by group, and the one of users named nowhere."""

    users: Mapping[str, Quota] = field(default_factory=dict)
    groups: Mapping[str, Quota] = field(default_factory=dict)
    default: Quota = Quota()

    @property
    def any(self) -> bool:
        """True when some quota is set."""
        return bool(self.users or self.groups or any(self.default.to_dict().values()))

    def of_user(self, user: str) -> Quota:
        """The quota of ``user``."""
        return self.users.get(user, self.default)


@dataclass(frozen=True)
class Teams:
    """The parsed ``teams`` settings."""

    admin_group: str | None = None
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Users of each group."""
    profiles: Mapping[str, Profile] = field(default_factory=dict)
    default_profile: str | None = None
    quotas: Quotas = Quotas()
    audit_log: str | None = None

    def groups_of(self, user: str | None) -> frozenset[str]:
        """The groups ``teams.groups`` puts ``user`` in."""
        if user is None:
            return frozenset()
        return frozenset(g for g, users in self.members.items() if user in users)


def parse_teams(section: Any, agent_types: Any = None) -> Teams:
    """The :class:`Teams` of a ``teams`` settings section (an object with its attributes), or
    :class:`TeamsError`. ``agent_types`` are the configured ``agents.commands`` (profiles must
    name one of them)."""
    admin_group = getattr(section, "admin_group", None)
    if admin_group is not None and name_problem(admin_group):
        raise TeamsError("teams.admin_group", NAME_RULE)
    members = _members(_plain(getattr(section, "groups", None)))
    profiles = _profiles(_plain(getattr(section, "profiles", None)), agent_types)
    default = getattr(section, "default_profile", None)
    if default is not None and default not in profiles:
        raise TeamsError("teams.default_profile", f"must name a profile of teams.profiles "
                         f"({', '.join(sorted(profiles)) or 'none configured'})")
    audit = getattr(section, "audit_log", None)
    if audit is not None and (not isinstance(audit, str) or not audit.strip()):
        raise TeamsError("teams.audit_log", "must be stdout or a file path, or unset")
    return Teams(admin_group, members, profiles, default, _quotas(_plain(getattr(section, "quotas", None))), audit)


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain dicts and lists."""
    if type(value).__name__ in ("DictConfig", "ListConfig"):
        from omegaconf import OmegaConf
        return OmegaConf.to_container(value)
    return value


def _mapping(value: Any, path: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TeamsError(path, f"must be a mapping of {what}")
    return dict(value)


def _names(value: Any, path: str) -> frozenset[str]:
    if not isinstance(value, (list, tuple)):
        raise TeamsError(path, "must be a list of names")
    for item in value:
        if name_problem(item):
            raise TeamsError(path, f"each name {NAME_RULE}; not {item!r}")
    return frozenset(value)


def _members(value: Any) -> dict[str, frozenset[str]]:
    groups = _mapping(value, "teams.groups", "group names to lists of users")
    for name in groups:
        if name_problem(name):
            raise TeamsError(f"teams.groups.{name}", f"group names {NAME_RULE}")
    return {name: _names(users or [], f"teams.groups.{name}") for name, users in groups.items()}


def _strings(value: Any, path: str, key_rule: re.Pattern[str] | None, key_text: str) -> dict[str, str]:
    out = {}
    for key, item in _mapping(value, path, "names to strings").items():
        if key_rule is not None and not (isinstance(key, str) and key_rule.fullmatch(key)):
            raise TeamsError(f"{path}.{key}", key_text)
        if not isinstance(item, str):
            raise TeamsError(f"{path}.{key}", "must be a string")
        out[key] = item
    return out


def _profile_resources(value: Any, path: str) -> dict[str, str]:
    resources = _strings({k: str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v
                          for k, v in _mapping(value, path, "resources").items()}, path, None, "")
    for key, amount in resources.items():
        if key not in RESOURCE_KEYS:
            raise TeamsError(f"{path}.{key}", f"is not a resource; use {', '.join(RESOURCE_KEYS)}")
        try:
            parse_quantity(amount)
        except ValueError:
            raise TeamsError(f"{path}.{key}", QUANTITY_RULE) from None
    return resources


def _idle_timeout(value: Any, path: str) -> float | None:
    from ..settings.fields import ValueRuleError, parse_duration

    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueRuleError as exc:
        raise TeamsError(path, str(exc)) from None
    if seconds <= 0:
        raise TeamsError(path, "must be a positive duration, or unset")
    return seconds


def _profiles(value: Any, agent_types: Any) -> dict[str, Profile]:
    profiles = {}
    for name, raw in _mapping(value, "teams.profiles", "profile names to profiles").items():
        path = f"teams.profiles.{name}"
        if name_problem(name):
            raise TeamsError(path, f"profile names {NAME_RULE}")
        raw = _mapping(raw, path, "profile fields")
        unknown = sorted(set(raw) - set(PROFILE_FIELDS))
        if unknown:
            raise TeamsError(f"{path}.{unknown[0]}", f"is not a profile field; use {', '.join(PROFILE_FIELDS)}")
        agent = raw.get("agent")
        if agent is not None and (agent_types is not None and agent not in agent_types):
            raise TeamsError(f"{path}.agent", f"must be one of the configured agent types "
                             f"({', '.join(sorted(agent_types))})")
        image = raw.get("image")
        if image is not None and (not isinstance(image, str) or not image or any(c.isspace() for c in image)):
            raise TeamsError(f"{path}.image", "must be a container image reference without spaces")
        resources = _profile_resources(raw.get("resources"), f"{path}.resources")
        idle = _idle_timeout(raw.get("idle_timeout"), f"{path}.idle_timeout")
        instructions = raw.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise TeamsError(f"{path}.instructions", "must be the text of the instruction file")
        mcp = _mapping(raw.get("mcp_servers"), f"{path}.mcp_servers", "server names to server configurations")
        for server, config in mcp.items():
            if not isinstance(config, Mapping):
                raise TeamsError(f"{path}.mcp_servers.{server}", "must be a server configuration (a mapping, "
                                 "e.g. {command: npx, args: [...]} or {type: http, url: ...})")
        credentials = _strings(raw.get("credentials"), f"{path}.credentials", ENV_NAME, ENV_NAME_RULE)
        for env_name, credential in credentials.items():
            if credential_problem(credential):
                raise TeamsError(f"{path}.credentials.{env_name}", CREDENTIAL_RULE)
        groups = raw.get("groups")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise TeamsError(f"{path}.description", "must be a string")
        profiles[name] = Profile(
            name=name, description=description, agent=agent, image=image, resources=resources,
            env=_strings(raw.get("env"), f"{path}.env", ENV_NAME, ENV_NAME_RULE), idle_timeout=idle,
            instructions=instructions, mcp_servers=mcp, credentials=credentials,
            groups=None if groups is None else _names(groups, f"{path}.groups"))
    return profiles


def _quota(value: Any, path: str) -> Quota:
    raw = _mapping(value, path, "quota fields")
    for key, amount in raw.items():
        if key not in QUOTA_FIELDS:
            raise TeamsError(f"{path}.{key}", f"is not a quota; use {', '.join(QUOTA_FIELDS)}")
        if amount is None:
            continue
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise TeamsError(f"{path}.{key}", "must be 0 (no limit) or more")
    return Quota(**{k: v or 0 for k, v in raw.items()})


def _quotas(value: Any) -> Quotas:
    raw = _mapping(value, "teams.quotas", "users, groups and default")
    for key in raw:
        if key not in ("users", "groups", "default"):
            raise TeamsError(f"teams.quotas.{key}", "is not a quota section; use users, groups, default")
    users = {name: _quota(q, f"teams.quotas.users.{name}")
             for name, q in _mapping(raw.get("users"), "teams.quotas.users", "user names to quotas").items()}
    groups = {name: _quota(q, f"teams.quotas.groups.{name}")
              for name, q in _mapping(raw.get("groups"), "teams.quotas.groups", "group names to quotas").items()}
    return Quotas(users, groups, _quota(raw.get("default"), "teams.quotas.default"))


CREDENTIAL = re.compile(r"^[a-z0-9]([-a-z0-9_.]{0,61}[a-z0-9])?$")
CREDENTIAL_RULE = ("credential names must be 1 to 63 lowercase letters, digits, '-', '_' or '.', starting and "
                   "ending with a letter or digit (e.g. anthropic)")


def credential_problem(name: Any) -> str | None:
    """Why ``name`` is not a credential name, or None when it is."""
    return None if isinstance(name, str) and CREDENTIAL.fullmatch(name) else CREDENTIAL_RULE


_PARSED: dict[int, tuple[Any, Teams]] = {}


def teams_of(settings: Any) -> Teams:
    """The parsed ``teams`` section of ``settings`` (checked when the settings were loaded; parsed
    once per settings object)."""
    section = getattr(settings, "teams", None)
    if section is None:
        return Teams()
    cached = _PARSED.get(id(section))
    if cached is not None and cached[0] is section:
        return cached[1]
    teams = parse_teams(section, getattr(getattr(settings, "agents", None), "commands", None))
    _PARSED[id(section)] = (section, teams)  # the section is kept, so its id is not reused
    return teams
