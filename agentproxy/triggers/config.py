"""The ``triggers`` settings, parsed and checked once: hooks, schedules, notifications.

Every rule broken is a :class:`TriggersError` naming the dotted setting and the rule; a template
that reaches Python internals is one of them (``triggers.hooks.ID.prompt: reaches Python
internals``). Secrets are never settings: a hook or subscription names where its secret is
(``secret_env``: a variable of the proxy's environment; ``secret_file``: a file), and
:func:`secret_of` reads it when it is needed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..apikeys import NAME_RULE, name_problem
from ..naming import SESSION_ID_RULE, is_valid_session_id
from ..teams.config import _plain
from .signatures import DEFAULT_HMAC_HEADER, SCHEMES
from .templates import MAX_PROMPT, Condition, Prompt, TemplateRefused

ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,22}[a-z0-9])?$")
RESERVED_HOOK_IDS = frozenset({"waiting"})
"""Hook ids whose ``POST /hooks/{id}`` is a route of the proxy itself (Claude pods' waiting reports)."""
ID_RULE = "ids must be 1 to 24 lowercase letters, digits and '-', starting and ending with a letter or digit"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
REUSE = ("none", "issue")
OVERLAP = ("skip", "replace")
MISSED = ("run_once", "skip")
EVENTS = ("waiting_input", "ready", "failed", "deleted")
FORMATS = ("signed", "slack")
HOOK_FIELDS = ("scheme", "secret_env", "secret_file", "header", "delivery_header", "match", "profile", "owner",
               "agent", "session", "prompt", "reuse", "max_running")
MATCH_FIELDS = ("events", "repositories", "actions", "labels", "when")
SCHEDULE_FIELDS = ("cron", "timezone", "prompt", "profile", "owner", "agent", "session", "overlap", "missed")
NOTIFY_FIELDS = ("url", "url_env", "format", "secret_env", "secret_file", "events", "owner", "hook", "schedule")


class TriggersError(ValueError):
    """A ``triggers`` setting breaks a rule; ``path`` is its dotted name."""

    def __init__(self, path: str, rule: str) -> None:
        self.path = path
        self.rule = rule
        super().__init__(f"{path}: {rule}")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret is: an environment variable of the proxy, a file, or (``stored``) the store
    of hooks defined through the API (never the value)."""

    env: str | None = None
    file: str | None = None
    stored: bool = False

    def describe(self) -> str:
        """Where it is, for listings and messages (never the value)."""
        if self.stored:
            return "stored"
        return f"env:{self.env}" if self.env else f"file:{self.file}"


@dataclass(frozen=True)
class Match:
    """What an event must be for a hook to act on it; an empty field matches anything."""

    events: frozenset[str] = frozenset()
    repositories: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    labels: frozenset[str] = frozenset()
    """The issue or pull request carries at least one of them (or the label just added is one)."""
    when: Condition | None = None


@dataclass(frozen=True)
class Run:
    """What a trigger starts: an agent of ``agent`` type (or its profile's) as ``owner``, with a
    rendered prompt, in ``session``."""

    prompt: Prompt
    session: str
    owner: str | None = None
    profile: str | None = None
    agent: str | None = None


@dataclass(frozen=True)
class Hook:
    """One inbound webhook (``POST /hooks/{id}``)."""

    id: str
    secret: SecretRef
    run: Run
    scheme: str = "github"
    header: str = DEFAULT_HMAC_HEADER
    delivery_header: str = "X-GitHub-Delivery"
    match: Match = Match()
    reuse: str = "none"
    max_running: int = 0

    def summary(self) -> dict[str, Any]:
        """What ``GET /hooks`` shows: where the secret is, never its value."""
        m = self.match
        return {"id": self.id, "scheme": self.scheme, "secret": self.secret.describe(),
                "match": {"events": sorted(m.events), "repositories": sorted(m.repositories),
                          "actions": sorted(m.actions), "labels": sorted(m.labels),
                          "when": m.when.source if m.when else None},
                "session": self.run.session, "owner": self.run.owner, "profile": self.run.profile,
                "agent": self.run.agent, "reuse": self.reuse, "max_running": self.max_running}


@dataclass(frozen=True)
class Schedule:
    """One cron schedule."""

    id: str
    cron: str
    timezone: str
    run: Run
    overlap: str = "skip"
    missed: str = "skip"

    def summary(self) -> dict[str, Any]:
        """What ``GET /schedules`` shows."""
        return {"id": self.id, "cron": self.cron, "timezone": self.timezone, "session": self.run.session,
                "owner": self.run.owner, "profile": self.run.profile, "agent": self.run.agent,
                "overlap": self.overlap, "missed": self.missed}


@dataclass(frozen=True)
class Subscription:
    """Where notifications of some agents' status changes go."""

    name: str
    url: str | None
    url_env: str | None
    format: str
    events: frozenset[str]
    secret: SecretRef | None = None
    owner: str | None = None
    hook: str | None = None
    schedule: str | None = None

    def summary(self) -> dict[str, Any]:
        """What listings show (a Slack URL is a secret too: only whether it is set)."""
        return {"name": self.name, "format": self.format, "events": sorted(self.events), "owner": self.owner,
                "hook": self.hook, "schedule": self.schedule,
                "url": f"env:{self.url_env}" if self.url_env else "(set)",
                "secret": self.secret.describe() if self.secret else None}


@dataclass(frozen=True)
class Delivery:
    """How notifications are sent."""

    attempts: int = 4
    backoff: float = 1.0
    """Seconds before the second attempt; doubled for each further one."""
    timeout: float = 10.0
    debounce: float = 30.0
    """At most one message per agent, subscription and kind in this many seconds (``deleted`` always goes)."""


@dataclass(frozen=True)
class Triggers:
    """The parsed ``triggers`` settings."""

    hooks: Mapping[str, Hook] = field(default_factory=dict)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)
    notifications: tuple[Subscription, ...] = ()
    delivery: Delivery = Delivery()

    @property
    def enabled(self) -> bool:
        """True when anything is configured."""
        return bool(self.hooks or self.schedules or self.notifications)


def _mapping(value: Any, path: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TriggersError(path, f"must be a mapping of {what}")
    return dict(value)


def _fields(raw: dict[str, Any], allowed: tuple[str, ...], path: str, what: str) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise TriggersError(f"{path}.{unknown[0]}", f"is not a {what} field; use {', '.join(allowed)}")


def _one_of(raw: dict[str, Any], key: str, allowed: tuple[str, ...], path: str) -> str:
    value = raw.get(key, allowed[0])
    if value not in allowed:
        raise TriggersError(f"{path}.{key}", f"must be one of {', '.join(allowed)}")
    return str(value)


def _strings(value: Any, path: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise TriggersError(path, "must be a list of non-empty strings")
    return frozenset(value)


def _secret(raw: dict[str, Any], path: str, required: bool) -> SecretRef | None:
    env, file = raw.get("secret_env"), raw.get("secret_file")
    if env is not None and file is not None:
        raise TriggersError(f"{path}.secret_env", "give secret_env or secret_file, not both")
    if env is not None:
        if not isinstance(env, str) or not ENV_NAME.fullmatch(env):
            raise TriggersError(f"{path}.secret_env", "must name an environment variable of the proxy")
        return SecretRef(env=env)
    if file is not None:
        if not isinstance(file, str) or not file.strip():
            raise TriggersError(f"{path}.secret_file", "must be the path of a file holding the secret")
        return SecretRef(file=file)
    if required:
        raise TriggersError(f"{path}.secret_env", "a secret is required: secret_env (a variable of the proxy's "
                            "environment) or secret_file; the secret itself is never a setting")
    return None


def _run(raw: dict[str, Any], path: str, default_session: str, agent_types: Any, prompt_max: int) -> Run:
    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise TriggersError(f"{path}.prompt", "must be a Jinja2 template of the first message")
    try:
        template = Prompt(prompt, prompt_max)
    except TemplateRefused as exc:
        raise TriggersError(f"{path}.prompt", str(exc)) from None
    session = raw.get("session", default_session)
    if not isinstance(session, str) or not is_valid_session_id(session):
        raise TriggersError(f"{path}.session", SESSION_ID_RULE)
    owner = raw.get("owner")
    if owner is not None and name_problem(owner):
        raise TriggersError(f"{path}.owner", f"the user it runs as: {NAME_RULE}")
    agent = raw.get("agent")
    if agent is not None and agent_types is not None and agent not in agent_types:
        raise TriggersError(f"{path}.agent", f"must be one of the configured agent types "
                            f"({', '.join(sorted(agent_types))})")
    profile = raw.get("profile")
    if profile is not None and not isinstance(profile, str):
        raise TriggersError(f"{path}.profile", "must name a profile of teams.profiles")
    return Run(template, session, owner, profile, agent)


def _match(value: Any, path: str) -> Match:
    raw = _mapping(value, path, "match rules")
    _fields(raw, MATCH_FIELDS, path, "match")
    when = raw.get("when")
    condition = None
    if when is not None:
        if not isinstance(when, str) or not when.strip():
            raise TriggersError(f"{path}.when", "must be a Jinja2 expression over the payload")
        try:
            condition = Condition(when)
        except TemplateRefused as exc:
            raise TriggersError(f"{path}.when", str(exc)) from None
    return Match(_strings(raw.get("events"), f"{path}.events"), _strings(raw.get("repositories"),
                 f"{path}.repositories"), _strings(raw.get("actions"), f"{path}.actions"),
                 _strings(raw.get("labels"), f"{path}.labels"), condition)


def _count(raw: dict[str, Any], key: str, path: str) -> int:
    value = raw.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TriggersError(f"{path}.{key}", "must be 0 (no limit) or more")
    return value


def _hook(hook_id: str, value: Any, agent_types: Any, prompt_max: int, stored_secret: bool = False) -> Hook:
    path = f"triggers.hooks.{hook_id}"
    if not ID.fullmatch(hook_id):
        raise TriggersError(path, f"hook {ID_RULE}")
    if hook_id in RESERVED_HOOK_IDS:
        raise TriggersError(path, f"the hook id {hook_id!r} is reserved: POST /hooks/{hook_id} is the proxy's own route")
    raw = _mapping(value, path, "hook fields")
    _fields(raw, HOOK_FIELDS, path, "hook")
    scheme = _one_of(raw, "scheme", SCHEMES, path)
    header = raw.get("header", DEFAULT_HMAC_HEADER)
    delivery = raw.get("delivery_header", "X-GitHub-Delivery" if scheme == "github" else "X-Delivery-Id")
    for key, item in (("header", header), ("delivery_header", delivery)):
        if not isinstance(item, str) or not HEADER.fullmatch(item):
            raise TriggersError(f"{path}.{key}", "must be an HTTP header name")
    secret = SecretRef(stored=True) if stored_secret else _secret(raw, path, required=True)
    assert secret is not None
    run = _run(raw, path, f"hook-{hook_id}", agent_types, prompt_max)
    return Hook(hook_id, secret, run, scheme, header, delivery, _match(raw.get("match"), f"{path}.match"),
                _one_of(raw, "reuse", REUSE, path), _count(raw, "max_running", path))


def parse_hook(hook_id: str, raw: Mapping[str, Any], agent_types: Any = None, prompt_max: int = MAX_PROMPT,
               stored_secret: bool = False) -> Hook:
    """One hook checked by the rules of ``triggers.hooks`` (a hook defined through the API is held
    to the same ones); with ``stored_secret``, its secret is the one the hooks' store keeps rather
    than a reference in ``raw``. :class:`TriggersError` names ``triggers.hooks.ID.FIELD``."""
    return _hook(hook_id, dict(raw), agent_types, prompt_max, stored_secret)


def _schedule(schedule_id: str, value: Any, agent_types: Any, prompt_max: int) -> Schedule:
    from .schedules import CronError, cron_problem

    path = f"triggers.schedules.{schedule_id}"
    if not ID.fullmatch(schedule_id):
        raise TriggersError(path, f"schedule {ID_RULE}")
    raw = _mapping(value, path, "schedule fields")
    _fields(raw, SCHEDULE_FIELDS, path, "schedule")
    cron, zone = raw.get("cron"), raw.get("timezone", "UTC")
    try:
        problem = cron_problem(cron, zone)
    except CronError as exc:
        raise TriggersError(f"{path}.{exc.field}", str(exc)) from None
    if problem:
        raise TriggersError(f"{path}.cron", problem)
    return Schedule(schedule_id, str(cron), str(zone), _run(raw, path, f"schedule-{schedule_id}", agent_types,
                                                            prompt_max),
                    _one_of(raw, "overlap", OVERLAP, path), _one_of(raw, "missed", ("skip", "run_once"), path))


def _subscription(index: int, value: Any, hooks: Mapping[str, Hook], schedules: Mapping[str, Schedule]) -> Subscription:
    path = f"triggers.notifications.{index}"
    raw = _mapping(value, path, "subscription fields")
    _fields(raw, NOTIFY_FIELDS + ("name",), path, "subscription")
    name = raw.get("name", f"subscription-{index}")
    url, url_env = raw.get("url"), raw.get("url_env")
    if (url is None) == (url_env is None):
        raise TriggersError(f"{path}.url", "give url or url_env (a variable of the proxy holding it), one of them")
    if url is not None and (not isinstance(url, str) or not re.fullmatch(r"https?://[^\s]+", url)):
        raise TriggersError(f"{path}.url", "must be an http:// or https:// URL")
    if url_env is not None and (not isinstance(url_env, str) or not ENV_NAME.fullmatch(url_env)):
        raise TriggersError(f"{path}.url_env", "must name an environment variable of the proxy")
    fmt = _one_of(raw, "format", FORMATS, path)
    events = _strings(raw.get("events", list(EVENTS)), f"{path}.events")
    bad = sorted(events - set(EVENTS))
    if bad:
        raise TriggersError(f"{path}.events", f"{bad[0]!r} is not an event; use {', '.join(EVENTS)}")
    owner, hook, schedule = raw.get("owner"), raw.get("hook"), raw.get("schedule")
    if owner is not None and name_problem(owner):
        raise TriggersError(f"{path}.owner", NAME_RULE)
    if hook is not None and hook not in hooks:
        raise TriggersError(f"{path}.hook", "must name a hook of triggers.hooks")
    if schedule is not None and schedule not in schedules:
        raise TriggersError(f"{path}.schedule", "must name a schedule of triggers.schedules")
    secret = _secret(raw, path, required=fmt == "signed")
    return Subscription(str(name), url, url_env, fmt, events, secret, owner, hook, schedule)


def _delivery(value: Any) -> Delivery:
    from ..settings.fields import ValueRuleError, parse_duration

    raw = _mapping(value, "triggers.delivery", "delivery settings")
    _fields(raw, ("attempts", "backoff", "timeout", "debounce"), "triggers.delivery", "delivery")
    attempts = raw.get("attempts", Delivery.attempts)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 20:
        raise TriggersError("triggers.delivery.attempts", "must be 1 to 20")
    durations = {}
    for key in ("backoff", "timeout", "debounce"):
        try:
            seconds = parse_duration(raw.get(key, getattr(Delivery, key)))
        except ValueRuleError as exc:
            raise TriggersError(f"triggers.delivery.{key}", str(exc)) from None
        if seconds < 0 or (key == "timeout" and seconds == 0):
            raise TriggersError(f"triggers.delivery.{key}", "must be a positive duration")
        durations[key] = seconds
    return Delivery(attempts, **durations)


def parse_triggers(section: Any, agent_types: Any = None) -> Triggers:
    """The :class:`Triggers` of a ``triggers`` settings section, or :class:`TriggersError`."""
    prompt_max = getattr(section, "prompt_max", MAX_PROMPT)
    if not isinstance(prompt_max, int) or not 1 <= prompt_max <= 1024 * 1024:
        raise TriggersError("triggers.prompt_max", "must be 1 to 1048576 characters")
    hooks = {h: _hook(h, v, agent_types, prompt_max) for h, v in
             _mapping(_plain(getattr(section, "hooks", None)), "triggers.hooks", "hook ids to hooks").items()}
    schedules = {s: _schedule(s, v, agent_types, prompt_max) for s, v in
                 _mapping(_plain(getattr(section, "schedules", None)), "triggers.schedules",
                          "schedule ids to schedules").items()}
    raw_subs = _plain(getattr(section, "notifications", None)) or []
    if not isinstance(raw_subs, list):
        raise TriggersError("triggers.notifications", "must be a list of subscriptions")
    subs = tuple(_subscription(i, v, hooks, schedules) for i, v in enumerate(raw_subs))
    return Triggers(hooks, schedules, subs, _delivery(_plain(getattr(section, "delivery", None))))


_PARSED: dict[int, tuple[Any, Triggers]] = {}


def triggers_of(settings: Any) -> Triggers:
    """The parsed ``triggers`` section of ``settings`` (parsed once per settings object)."""
    section = getattr(settings, "triggers", None)
    if section is None:
        return Triggers()
    cached = _PARSED.get(id(section))
    if cached is not None and cached[0] is section:
        return cached[1]
    parsed = parse_triggers(section, getattr(getattr(settings, "agents", None), "commands", None))
    _PARSED[id(section)] = (section, parsed)
    return parsed


class SecretMissing(LookupError):
    """A secret's variable is unset or its file unreadable."""


def secret_of(ref: SecretRef, environ: Mapping[str, str] = os.environ) -> bytes:
    """The secret's bytes, read now (a changed file or variable applies at once)."""
    if ref.env is not None:
        value = environ.get(ref.env)
        if not value:
            raise SecretMissing(f"the variable {ref.env} is not set")
        return value.encode("utf-8")
    try:
        data = Path(os.path.expanduser(ref.file or "")).read_bytes().strip()
    except OSError:
        raise SecretMissing(f"the file {ref.file} cannot be read") from None
    if not data:
        raise SecretMissing(f"the file {ref.file} is empty")
    return data
