"""Rules that typed settings must follow beyond their types."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..naming import (
    DNS_LABEL_RULE,
    DNS_SUBDOMAIN_RULE,
    SESSION_ID_RULE,
    is_dns_label,
    is_dns_subdomain,
    is_valid_session_id,
)
from ..quantity import QUANTITY_RULE, parse_quantity, request_above_limit
from .errors import SettingsError, Source
from .schema import CLAUDE_PERMISSION_MODES, Settings

_AGENT_TYPE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IMAGE = re.compile(r"^[^\s]+$")
_ORIGIN = re.compile(r"^https?://[^\s/,]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")

Check = Callable[[Any], str | None]


def _one_of(*allowed: str) -> Check:
    return lambda v: None if v in allowed else f"must be one of {', '.join(allowed)}"


def _port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else "must be a TCP port between 1 and 65535"


def _nice(v: int) -> str | None:
    return None if 0 <= v <= 19 else "must be a nice value between 0 and 19"


def _nonempty(v: str) -> str | None:
    return None if v and v.strip() else "must not be empty"


def _quantity(v: str) -> str | None:
    try:
        value = parse_quantity(v)
    except ValueError:
        return QUANTITY_RULE
    return None if value > 0 else "must be a positive Kubernetes quantity"


def _positive_duration(v: float) -> str | None:
    return None if v > 0 else "must be a positive duration"


def _origins(v: str) -> str | None:
    bad = [o for o in (part.strip() for part in v.split(",")) if o and not _ORIGIN.fullmatch(o)]
    return None if not bad else f"must be comma-separated origins such as https://ui.example.com; not {bad[0]!r}"


def _at_least_one(v: int) -> str | None:
    return None if v >= 1 else "must be 1 or more"


def _zero_or_more(v: int) -> str | None:
    return None if v >= 0 else "must be 0 (no limit) or more"


def _optional(check: Callable[[Any], bool], rule: str) -> Check:
    return lambda v: None if v is None or check(v) else rule


_REQUESTS_AND_LIMITS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")

_RULES: dict[str, Check] = {
    "server.host": _nonempty,
    "server.port": _port,
    "server.other_mode_agents": _one_of("refuse", "warn"),
    "agents.first_message_timeout": _positive_duration,
    "agents.idle_timeout": _optional(lambda v: v > 0, "must be a positive duration, or unset for no idle culling"),
    "agents.max_age": _optional(lambda v: v > 0, "must be a positive duration, or unset to keep agents of any age"),
    "agents.claude.api_key_env": lambda v: None if _ENV_NAME.fullmatch(v) else
        "must name an environment variable: a letter or '_' followed by letters, digits or '_'",
    "agents.claude.base_url": _optional(lambda v: bool(_BASE_URL.fullmatch(v)),
                                        "must be an http:// or https:// URL without spaces, or unset"),
    "agents.claude.permission_mode": _optional(lambda v: v in CLAUDE_PERMISSION_MODES,
                                               f"must be one of {', '.join(CLAUDE_PERMISSION_MODES)}, or unset"),
    "local_mode.agentapi_binary": _nonempty,
    "local_mode.state_save_interval": _positive_duration,
    **{f"local_mode.supervision.{name}": _positive_duration for name in (
        "start_timeout", "backoff_initial", "backoff_max", "crash_loop_window", "probe_interval_min",
        "probe_interval_max", "probe_timeout", "sample_interval", "disk_interval")},
    "local_mode.supervision.crash_loop_failures": _at_least_one,
    "server.max_body": lambda v: None if v >= 1024 else "must be at least 1024 bytes",
    "agents.max_per_session": _zero_or_more,
    "agents.max_per_owner": _zero_or_more,
    "agents.max_concurrent_creates": _at_least_one,
    "agents.max_queued_creates": _zero_or_more,
    **{f"k8s_mode.api.{name}": _positive_duration for name in (
        "request_timeout", "check_interval", "unready_after", "retry_after", "watch_silence")},
    "local_mode.supervision.launch_concurrency": _at_least_one,
    "k8s_mode.api.max_in_flight": _at_least_one,
    "local_mode.ports.start": _port,
    "local_mode.ports.end": _port,
    "local_mode.data_dir": _nonempty,
    "local_mode.agent_nice": _nice,
    "k8s_mode.namespace": lambda v: None if is_dns_label(v) else DNS_LABEL_RULE,
    "k8s_mode.image": lambda v: None if v and _IMAGE.fullmatch(v) else "must be a container image reference without spaces",
    "k8s_mode.image_pull_policy": _one_of("Always", "IfNotPresent", "Never"),
    "k8s_mode.resources.cpu_request": _quantity,
    "k8s_mode.resources.cpu_limit": _quantity,
    "k8s_mode.resources.memory_request": _quantity,
    "k8s_mode.resources.memory_limit": _quantity,
    "k8s_mode.resources.storage_size": _quantity,
    "k8s_mode.storage_class": _optional(is_dns_subdomain, DNS_SUBDOMAIN_RULE),
    "k8s_mode.secret_name": _optional(is_dns_subdomain, DNS_SUBDOMAIN_RULE),
    "k8s_mode.service_account": _optional(is_dns_subdomain, DNS_SUBDOMAIN_RULE),
    "k8s_mode.work_dir": lambda v: None if v.startswith("/") else "must be an absolute path",
    "k8s_mode.run_as_user": lambda v: None if v >= 1 else "must be a non-root UID (1 or more)",
    "k8s_mode.pvc_retention_when_deleted": _one_of("Retain", "Delete"),
    "k8s_mode.field_manager": lambda v: None if v and len(v) <= 128 else "must be 1 to 128 characters",
    "k8s_mode.pod_address": _one_of("dns", "pod_ip"),
    "k8s_mode.waiting_url": _optional(lambda v: bool(_BASE_URL.fullmatch(v)),
                                      "must be an http:// or https:// URL without spaces, or unset"),
    "k8s_mode.waiting_audience": lambda v: None if v and len(v) <= 253 and not any(c.isspace() for c in v)
    else "must be 1 to 253 characters without spaces",
    "server.oidc.issuer": _optional(lambda v: bool(_BASE_URL.fullmatch(v)),
                                    "must be the provider's http:// or https:// issuer URL, or unset (no sign-in)"),
    "server.oidc.client_secret_env": _optional(lambda v: bool(_ENV_NAME.fullmatch(v)),
                                               "must name an environment variable: a letter or '_' followed by "
                                               "letters, digits or '_', or unset (a public client)"),
    "server.oidc.public_url": _optional(lambda v: bool(_BASE_URL.fullmatch(v)),
                                        "must be an http:// or https:// URL without spaces, or unset"),
    "server.oidc.username_claim": _nonempty,
    "server.oidc.groups_claim": _nonempty,
    "server.oidc.scopes": lambda v: None if "openid" in v.split() else "must be space-separated scopes with openid",
    "server.oidc.jwks_cache": _positive_duration,
    "server.oidc.jwks_min_refresh": lambda v: None if v >= 0 else "must be 0 or a positive duration",
    "server.oidc.leeway": lambda v: None if v >= 0 else "must be 0 or a positive duration",
    "compat.agentapi_proxy.session": lambda v: None if is_valid_session_id(v) else SESSION_ID_RULE,
    "compat.agentapi_proxy.allowed_origins": _origins,
}


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def validate(s: Settings, source_of: Callable[[str], Source]) -> None:
    """Raise :class:`SettingsError` for the first setting that breaks a rule; ``source_of``
    tells where the value of a dotted path came from."""
    for path, check in _RULES.items():
        value = _get(s, path)
        rule = check(value)
        if rule:
            raise SettingsError(path, rule, value, source_of(path))

    for name in s.agents.commands:
        if not _AGENT_TYPE.fullmatch(name):
            path = f"agents.commands.{name}"
            raise SettingsError(path, "agent type names must be lowercase letters, digits and '-'",
                                name, source_of(path), show_value=False)
    if s.agents.default_type not in s.agents.commands:
        raise SettingsError("agents.default_type",
                            f"must be one of the configured agent types: {', '.join(sorted(s.agents.commands))}",
                            s.agents.default_type, source_of("agents.default_type"))

    timing = s.local_mode.supervision
    for low, high in (("backoff_initial", "backoff_max"), ("probe_interval_min", "probe_interval_max")):
        if getattr(timing, low) > getattr(timing, high):
            path = f"local_mode.supervision.{low}"
            raise SettingsError(path, f"must not exceed local_mode.supervision.{high} ({getattr(timing, high):g})",
                                getattr(timing, low), source_of(path))

    compat_type = s.compat.agentapi_proxy.agent_type
    if compat_type is not None and compat_type not in s.agents.commands:
        raise SettingsError("compat.agentapi_proxy.agent_type",
                            f"must be one of the configured agent types: {', '.join(sorted(s.agents.commands))}",
                            compat_type, source_of("compat.agentapi_proxy.agent_type"))

    ports = s.local_mode.ports
    if ports.start > ports.end:
        raise SettingsError("local_mode.ports.start", f"must not exceed local_mode.ports.end ({ports.end})",
                            ports.start, source_of("local_mode.ports.start"))

    res = s.k8s_mode.resources
    kind = request_above_limit({key: getattr(res, key) for key in _REQUESTS_AND_LIMITS})
    if kind is not None:
        path, limit = f"k8s_mode.resources.{kind}_request", getattr(res, f"{kind}_limit")
        raise SettingsError(path, f"must not exceed k8s_mode.resources.{kind}_limit ({limit})",
                            getattr(res, f"{kind}_request"), source_of(path))

    oidc = s.server.oidc
    if oidc.issuer is not None and not oidc.client_id:
        raise SettingsError("server.oidc.client_id", "must name the dashboard's client at the provider when "
                            "server.oidc.issuer is set", oidc.client_id, source_of("server.oidc.client_id"))

    _validate_sections(s, source_of)


def _validate_sections(s: Settings, source_of: Callable[[str], Source]) -> None:
    """The sections parsed by their own packages: teams, triggers and pools."""
    from ..teams.config import TeamsError, parse_teams
    try:
        parse_teams(s.teams, s.agents.commands)
    except TeamsError as exc:
        top = ".".join(exc.path.split(".")[:2])
        raise SettingsError(exc.path, exc.rule, source=source_of(top), show_value=False) from None

    from ..triggers.config import TriggersError, parse_triggers
    try:
        parse_triggers(s.triggers, s.agents.commands)
    except TriggersError as exc:
        top = ".".join(exc.path.split(".")[:2])
        raise SettingsError(exc.path, exc.rule, source=source_of(top), show_value=False) from None

    from ..backends.pooling import member_spec
    from ..pools import PoolsError, parse_pools
    from ..spec import SpecError
    try:
        pools = parse_pools(s.pools, s.agents.commands, s.agents.default_type, _profile_names(s.teams.profiles))
    except PoolsError as exc:
        raise SettingsError(exc.path, exc.rule, source=source_of("pools"), show_value=False) from None
    for index, pool in enumerate(pools):
        try:  # a member is an agent like any other: its resources are within the same bounds
            member_spec(s, pool, "member")
        except SpecError as exc:
            raise SettingsError(f"pools.{index}.{exc.field}", exc.rule, source=source_of("pools"),
                                show_value=False) from None

def _profile_names(profiles: Any) -> list[str]:
    """The names of ``teams.profiles`` (checked before: a mapping or unset)."""
    from ..teams.config import _plain
    plain = _plain(profiles)
    return [str(name) for name in plain] if isinstance(plain, dict) else []
