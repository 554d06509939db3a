"""What one agent is: the validated, mode-independent description of a create request."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .naming import AGENT_ID_RULE, SESSION_ID_RULE, generate_agent_id, is_valid_agent_id, is_valid_session_id
from .quantity import QUANTITY_RULE, parse_quantity, request_above_limit
from .settings import Settings

AGENTAPI_KNOWN_TYPES = frozenset({"claude", "goose", "aider", "codex", "gemini", "amp"})
"""Agent types agentapi parses natively; any other program runs as type ``custom``."""

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME_RULE = "must be a letter or '_' followed by letters, digits or '_'"
RESERVED_ENV_PREFIXES = ("AGENTAPI_", "AGENTPROXY_")
MAX_ENV_VARS = 100
MAX_ENV_NAME = 253  # what a ConfigMap key may hold
MAX_ENV_VALUE = 32 * 1024
MAX_MESSAGE = 64 * 1024
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "storage_size")
TEXT_RULE = "must be UTF-8 text without NUL characters (no \\u0000, no lone surrogates such as \\ud800)"
"""What every free-text value of a request must be: a process's environment and arguments end at
a NUL byte, and a lone surrogate has no UTF-8 bytes (neither a file, a process nor Kubernetes
could be given it)."""


def text_problem(value: str) -> str | None:
    """Why ``value`` is not text an agent can be given (:data:`TEXT_RULE`), or None when it is."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (\\u{ord(value[exc.start]):04x}) at character {exc.start}"
    return None


def check_text(field_name: str, value: str, *, kind: str = "unprocessable") -> None:
    """Raise :class:`SpecError` naming ``field_name`` when ``value`` breaks :data:`TEXT_RULE`."""
    problem = text_problem(value)
    if problem is not None:
        raise SpecError(field_name, f"{TEXT_RULE}; it {problem}", kind=kind)


class SpecError(ValueError):
    """A create request has a value that breaks a rule; names the field and the rule."""

    def __init__(self, field_name: str, rule: str, *, kind: str = "invalid") -> None:
        self.field = field_name
        self.rule = rule
        self.kind = kind  # "invalid" (a malformed id: HTTP 400) or "unprocessable" (HTTP 422)
        super().__init__(f"{field_name}: {rule}")


@dataclass(frozen=True)
class Resources:
    """Requests and limits of one agent, as Kubernetes quantity strings."""

    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str
    storage_size: str


def fingerprint(spec_json: str) -> str:
    """The fingerprint of the spec whose :meth:`AgentSpec.to_json` is ``spec_json``."""
    return hashlib.sha256(spec_json.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AgentSpec:
    """Everything that defines an agent; both backends start agents from it."""

    id: str
    session: str
    type: str
    command: tuple[str, ...]
    resources: Resources
    env: Mapping[str, str] = field(default_factory=dict, hash=False)  # dicts do not hash; eq still compares
    message: str | None = None
    owner: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Labels a client attached (the agentapi-proxy session API's ``tags``): kept and listed, never interpreted."""
    group: str | None = None
    """The group of the owner's the agent is shared with: its members see and talk to it."""
    profile: str | None = None
    """The profile (``teams.profiles``) it was made from: its image, home files and idle timeout."""
    pool: str | None = None
    """The warm pool whose member it is or was made from (k8s mode): its pod is the member's,
    which waited for its binding (see :mod:`agentproxy.pools`); None for an agent made cold."""

    @property
    def agentapi_type(self) -> str:
        """The ``--type`` agentapi is started with."""
        return self.type if self.type in AGENTAPI_KNOWN_TYPES else "custom"

    @property
    def command_line(self) -> str:
        """The agent command as one shell-quoted line (for people to read)."""
        return shlex.join(self.command)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (env as a plain dict, command as a list)."""
        # Field by field rather than dataclasses.asdict, which deep-copies every value: the
        # values are strings, a tuple, two mappings of strings and flat Resources.
        data = {name: getattr(self, name) for name in _SPEC_FIELDS}
        data["resources"] = {name: getattr(self.resources, name) for name in _RESOURCE_FIELDS}
        data["command"] = list(self.command)
        data["env"] = dict(self.env)
        data["tags"] = dict(self.tags)
        if not data["tags"]:
            del data["tags"]  # a spec without tags keeps the JSON (and fingerprint) it had before tags existed
        for optional in ("group", "profile", "pool"):  # likewise
            if data[optional] is None:
                del data[optional]
        return data

    def to_json(self) -> str:
        """Canonical JSON of the spec (sorted keys, no spaces)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """A stable hash of the spec: equal specs give equal fingerprints."""
        return fingerprint(self.to_json())

    @classmethod
    def from_json(cls, text: str) -> AgentSpec:
        """The spec :meth:`to_json` wrote (raises ``ValueError`` when it is not one)."""
        try:
            data = json.loads(text)
            data["command"] = tuple(data["command"])
            data["resources"] = Resources(**data["resources"])
            return cls(**data)
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an agent spec: {exc}") from None


def build_spec(
    settings: Settings,
    session: str,
    agent_id: str | None = None,
    agent_type: str | None = None,
    env: Mapping[str, Any] | None = None,
    message: str | None = None,
    resources: Mapping[str, Any] | None = None,
    owner: str | None = None,
) -> AgentSpec:
    """Validate a create request against the settings and return its spec.

    Raises :class:`SpecError` naming the first offending field.
    """
    if not is_valid_session_id(session):
        raise SpecError("session", SESSION_ID_RULE)
    if agent_id is None:
        agent_id = generate_agent_id()
    elif not is_valid_agent_id(agent_id):
        raise SpecError("id", AGENT_ID_RULE)
    agent_type = settings.agents.default_type if agent_type is None else agent_type
    commands = settings.agents.commands
    if agent_type not in commands:
        raise SpecError("agent", f"unknown agent type {agent_type!r}; configured types: "
                        f"{', '.join(sorted(commands))}", kind="unprocessable")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE):
        raise SpecError("message", f"must be a string of at most {MAX_MESSAGE} characters", kind="unprocessable")
    if message is not None:
        check_text("message", message)
    return AgentSpec(
        id=agent_id,
        session=session,
        type=agent_type,
        command=tuple(commands[agent_type]),
        resources=_resources(settings, resources or {}),
        env=_env(env or {}),
        message=message,
        owner=owner,
    )


def _env(env: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise SpecError("env", "must be an object of names to string values", kind="unprocessable")
    if len(env) > MAX_ENV_VARS:
        raise SpecError("env", f"must hold at most {MAX_ENV_VARS} variables", kind="unprocessable")
    out: dict[str, str] = {}
    for name, value in env.items():
        if not isinstance(name, str) or not ENV_NAME.fullmatch(name):
            raise SpecError(f"env.{name}", ENV_NAME_RULE, kind="unprocessable")
        if len(name) > MAX_ENV_NAME:
            raise SpecError(f"env.{name[:40]}...", f"names may have at most {MAX_ENV_NAME} characters",
                            kind="unprocessable")
        if name.startswith(RESERVED_ENV_PREFIXES):
            raise SpecError(f"env.{name}", f"names starting with {' or '.join(RESERVED_ENV_PREFIXES)} are "
                            "reserved for agentproxy and agentapi", kind="unprocessable")
        if not isinstance(value, str) or len(value) > MAX_ENV_VALUE:
            raise SpecError(f"env.{name}", f"must be a string of at most {MAX_ENV_VALUE} characters",
                            kind="unprocessable")
        check_text(f"env.{name}", value)
        out[name] = value
    return out


def _resources(settings: Settings, requested: Mapping[str, Any]) -> Resources:
    """Defaults from settings; a request may change them within the configured limits."""
    if not isinstance(requested, Mapping):
        raise SpecError("resources", "must be an object", kind="unprocessable")
    configured = settings.k8s_mode.resources
    values = {key: getattr(configured, key) for key in RESOURCE_KEYS}
    for key, value in requested.items():
        if key not in values:
            raise SpecError(f"resources.{key}", f"is not a resource; use {', '.join(RESOURCE_KEYS)}",
                            kind="unprocessable")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise SpecError(f"resources.{key}", QUANTITY_RULE, kind="unprocessable")
        try:
            amount = parse_quantity(str(value))
        except ValueError:
            raise SpecError(f"resources.{key}", QUANTITY_RULE, kind="unprocessable") from None
        if amount <= 0:
            raise SpecError(f"resources.{key}", "must be positive", kind="unprocessable")
        values[key] = str(value)
    bounds = {"cpu_request": "cpu_limit", "cpu_limit": "cpu_limit", "memory_request": "memory_limit",
              "memory_limit": "memory_limit", "storage_size": "storage_size"}
    for key, bound in bounds.items():
        ceiling = getattr(configured, bound)
        if key in requested and parse_quantity(values[key]) > parse_quantity(ceiling):
            raise SpecError(f"resources.{key}", f"must not exceed the configured k8s_mode.resources.{bound} "
                            f"({ceiling})", kind="unprocessable")
    kind = request_above_limit(values)
    if kind is not None:
        raise SpecError(f"resources.{kind}_request", f"must not exceed resources.{kind}_limit "
                        f"({values[f'{kind}_limit']})", kind="unprocessable")
    return Resources(**values)


_SPEC_FIELDS = tuple(f.name for f in fields(AgentSpec))
_RESOURCE_FIELDS = tuple(f.name for f in fields(Resources))
