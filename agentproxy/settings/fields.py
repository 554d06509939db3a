"""The schema's leaves, and how raw values are turned into typed ones.

Every setting has a dotted path (``k8s_mode.resources.cpu_limit``) and exactly
one environment variable, ``AGENTAPI_`` followed by the path with dots turned
into underscores and upper-cased (``AGENTAPI_K8S_MODE_RESOURCES_CPU_LIMIT``).
The variable is looked up in this table, built from the schema, rather than
split at underscores: ``K8S_MODE`` and ``CPU_LIMIT`` hold underscores of their own.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import typing
from dataclasses import dataclass
from typing import Any

import yaml

from ..apikeys import ApiKeyError, parse_api_keys
from .errors import Source
from .schema import Settings

ENV_PREFIX = "AGENTAPI_"
CONFIG_ENV = "AGENTAPI_CONFIG"
"""Environment variable naming the config file (``--config`` wins over it)."""

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}
BOOL_RULE = "must be a boolean: true/false, 1/0 or yes/no"


class ValueRuleError(ValueError):
    """A raw value broke its field's type rule; the message is the rule."""


@dataclass(frozen=True)
class Leaf:
    """One setting of the schema."""

    path: str
    kind: str  # "bool", "int", "duration", "str", "commands", "api_keys"
    optional: bool

    @property
    def env_var(self) -> str:
        """The environment variable that sets this leaf."""
        return ENV_PREFIX + self.path.replace(".", "_").upper()

    def coerce(self, value: Any, source: Source) -> Any:
        """Turn a raw value into this leaf's type, or raise :class:`ValueRuleError`.

        Strings from the environment and ``--set`` are parsed by the leaf's own
        rule; values from a file keep their YAML/JSON type and must fit it.
        """
        from_text = source.kind in ("env", "set")
        if value is None or (from_text and self.optional and value in ("", "null", "~")):
            if self.optional:
                return None
            raise ValueRuleError(f"must be set (a {_KIND_NAMES[self.kind]})")
        return _COERCERS[self.kind](value, from_text)


_KIND_NAMES = {
    "bool": "boolean",
    "int": "integer",
    "duration": "duration",
    "str": "string",
    "commands": "mapping of agent type to command",
    "api_keys": "list of API keys",
}


def _coerce_bool(value: Any, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueRuleError(BOOL_RULE)


def _coerce_int(value: Any, from_text: bool) -> int:
    if isinstance(value, bool):
        raise ValueRuleError("must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise ValueRuleError("must be an integer")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_RULE = "must be a duration: seconds, or a number with ms, s, m or h (e.g. 500ms, 30s, 30m, 1h)"


def parse_duration(value: Any) -> float:
    """Seconds of a duration setting: a number of seconds or ``<number><ms|s|m|h>``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0 or value != value or value == float("inf"):
            raise ValueRuleError(DURATION_RULE)
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueRuleError(DURATION_RULE)
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def _coerce_duration(value: Any, from_text: bool) -> float:
    return parse_duration(value)


def _coerce_str(value: Any, from_text: bool) -> str:
    # YAML reads `cpu_request: 0.5` or `memory_limit: 1` as numbers; they are
    # meant as the strings they were written as.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueRuleError("must be a string")


def _coerce_command(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            raise ValueRuleError(f"is not a valid shell command line ({exc})") from None
    elif isinstance(value, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool) for a in value):
        argv = [str(a) for a in value]
    else:
        raise ValueRuleError("must be a command: a list of arguments or a command line string")
    if not argv or not argv[0]:
        raise ValueRuleError("must be a non-empty command")
    return argv


def _coerce_commands(value: Any, from_text: bool) -> dict[str, list[str]]:
    if from_text and isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueRuleError("must be a YAML mapping such as {aider: [aider, --yes]}") from None
    if not isinstance(value, dict):
        raise ValueRuleError("must be a mapping of agent type to command, such as {aider: [aider, --yes]}")
    return {str(name): _coerce_command(argv) for name, argv in value.items()}


def _coerce_api_keys(value: Any, from_text: bool) -> list[dict[str, Any]]:
    if from_text and isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError:
            raise ValueRuleError("must be a YAML list such as [{name: alice, sha256: ..., admin: true}]") from None
    if not isinstance(value, list):
        raise ValueRuleError("must be a list of {name, sha256, admin} entries")
    records = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueRuleError(f"entry {index} must be a mapping with only name, sha256 and admin")
        if "admin" in item:  # booleans are written as settings write them (yes, 1, ...)
            item = {**item, "admin": _coerce_bool(item["admin"], from_text)}
        records.append(item)
    try:
        return [key.to_record() for key in parse_api_keys(records)]
    except ApiKeyError as exc:
        raise ValueRuleError(str(exc)) from None


_COERCERS = {"bool": _coerce_bool, "int": _coerce_int, "duration": _coerce_duration, "str": _coerce_str,
             "commands": _coerce_commands, "api_keys": _coerce_api_keys}


def coerce_command(value: Any) -> list[str]:
    """Parse one agent command (``agents.commands.NAME``)."""
    return _coerce_command(value)


def _kind_of(annotation: Any) -> tuple[str, bool]:
    optional = False
    if typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional, annotation = True, args[0]
    if annotation is bool:
        return "bool", optional
    if annotation is int:
        return "int", optional
    if annotation is float:  # every float setting is a duration in seconds
        return "duration", optional
    if annotation is str:
        return "str", optional
    if typing.get_origin(annotation) is dict:
        return "commands", optional
    if typing.get_origin(annotation) is list:
        return "api_keys", optional
    raise TypeError(f"unsupported settings type {annotation!r}")  # pragma: no cover


def _walk(cls: type, prefix: str) -> dict[str, Any]:
    """Map each field name of a dataclass to a nested dict (a section) or a Leaf."""
    hints = typing.get_type_hints(cls)
    tree: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        path = f"{prefix}{f.name}"
        annotation = hints[f.name]
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            tree[f.name] = _walk(annotation, path + ".")
        else:
            kind, optional = _kind_of(annotation)
            tree[f.name] = Leaf(path, kind, optional)
    return tree


SCHEMA_TREE: dict[str, Any] = _walk(Settings, "")
"""The schema as nested dicts of sections ending in :class:`Leaf` objects."""


def _flatten(tree: dict[str, Any]) -> dict[str, Leaf]:
    leaves: dict[str, Leaf] = {}
    for node in tree.values():
        if isinstance(node, Leaf):
            leaves[node.path] = node
        else:
            leaves.update(_flatten(node))
    return leaves


LEAVES: dict[str, Leaf] = _flatten(SCHEMA_TREE)
"""Every setting, by dotted path."""

ENV_VARS: dict[str, Leaf] = {leaf.env_var: leaf for leaf in LEAVES.values()}
"""Every setting, by its environment variable."""

# The mapping must be one-to-one, or an environment variable would be ambiguous.
assert len(ENV_VARS) == len(LEAVES), "two settings map to the same environment variable"
