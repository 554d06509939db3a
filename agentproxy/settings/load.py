"""Merge settings from their four layers and remember where each value came from.

Order, lowest first: built-in defaults < config file (``--config FILE`` or
``$AGENTAPI_CONFIG``; ``.yaml``, ``.yml`` or ``.json``) < environment
(``AGENTAPI_*``) < command-line ``--set dotted.key=value``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from omegaconf import OmegaConf

from .errors import DEFAULT, SettingsError, Source
from .fields import CONFIG_ENV, ENV_VARS, LEAVES, SCHEMA_TREE, Leaf, ValueRuleError
from .schema import Settings
from .validate import validate

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class LoadedSettings:
    """The effective settings and the source of every value that is not a default."""

    settings: Settings
    sources: Mapping[str, Source]

    def source_of(self, path: str) -> Source:
        """Where the value at ``path`` came from (``default`` when nothing set it)."""
        return self.sources.get(path, DEFAULT)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> LoadedSettings:
    """Build the effective settings, validated, or raise :class:`SettingsError`.

    ``config_file`` wins over ``$AGENTAPI_CONFIG``; ``overrides`` are ``--set``
    strings (``key=value``); ``environ`` defaults to ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    layer = _Layers()
    path = config_file if config_file is not None else environ.get(CONFIG_ENV) or None
    if path is not None:
        layer.add_file(Path(path))
    for name, value in environ.items():
        leaf = ENV_VARS.get(name)
        if leaf is not None:
            layer.put(leaf, value, Source("env", name))
    for item in overrides:
        layer.add_override(item)

    settings = _merge(layer.values)
    loaded = LoadedSettings(settings, dict(layer.sources))
    validate(settings, loaded.source_of)
    return loaded


_INTERPOLATION = re.compile(r"(\\*)\$\{")


def _literal(value: Any) -> Any:
    """Escape OmegaConf syntax in a value, so that ``${...}`` in an image name or
    an agent command stays text: settings come from users, not from templates."""
    if isinstance(value, str):
        # Backslashes before "${" are themselves escapes in OmegaConf's grammar.
        return _INTERPOLATION.sub(lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def _merge(values: Mapping[str, Any]) -> Settings:
    """The schema's defaults with the typed values merged in (mappings key by key)."""
    merged = OmegaConf.merge(OmegaConf.structured(Settings), OmegaConf.create(_literal(dict(values))))
    return cast(Settings, OmegaConf.to_object(merged))  # the structured config of Settings makes one


class _Layers:
    """Accumulates typed overrides (later ones win) and their sources."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.sources: dict[str, Source] = {}

    def put(self, leaf: Leaf, raw: Any, source: Source) -> None:
        try:
            value = leaf.coerce(raw, source)
        except ValueRuleError as exc:
            raise SettingsError(leaf.path, str(exc), raw, source) from None
        if value == "???" or (leaf.kind == "commands" and "???" in value.values()):
            # OmegaConf reads a bare '???' as "no value" and would keep the default.
            raise SettingsError(leaf.path, "'???' is reserved and cannot be a value", raw, source)
        self._assign(leaf.path, value)
        if leaf.kind == "commands":
            # A mapping merges into the defaults key by key, so track each key.
            for name in value:
                self.sources[f"{leaf.path}.{name}"] = source
        else:
            self.sources[leaf.path] = source

    def _put_text_command(self, leaf: Leaf, name: str, raw: str, source: Source) -> None:
        """``--set agents.commands.aider="aider --yes"`` (or ``=[aider, --yes]``)."""
        parsed: Any = raw
        if raw.lstrip().startswith("["):
            try:
                parsed = yaml.safe_load(raw)
            except yaml.YAMLError:
                raise SettingsError(f"{leaf.path}.{name}", "is not a valid YAML list", raw, source) from None
        try:
            value = leaf.coerce({name: parsed}, Source("file"))
        except ValueRuleError as exc:
            raise SettingsError(f"{leaf.path}.{name}", str(exc), raw, source) from None
        self._assign(leaf.path, value)
        self.sources[f"{leaf.path}.{name}"] = source

    def _assign(self, path: str, value: Any) -> None:
        node = self.values
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(last), dict):
            node[last].update(value)
        else:
            node[last] = value

    def add_file(self, path: Path) -> None:
        source = Source("file", str(path))
        if path.suffix.lower() not in CONFIG_SUFFIXES:
            raise SettingsError("config", "must be a .yaml, .yml or .json file", str(path), source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError("config", f"cannot be read ({exc.strerror})", str(path)) from None
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            where = _parse_error_position(exc)
            raise SettingsError("config", f"is not valid {path.suffix[1:].upper()}{where}", str(path)) from None
        if data is None:
            return
        if not isinstance(data, dict):
            raise SettingsError("config", "must contain a mapping of settings at the top level", str(path))
        self._add_mapping(data, SCHEMA_TREE, "", source)

    def _add_mapping(self, data: dict, tree: dict[str, Any], prefix: str, source: Source) -> None:
        for key, raw in data.items():
            node = tree.get(key) if isinstance(key, str) else None
            path = f"{prefix}{key}"
            if node is None:
                raise SettingsError(path, f"is not a known setting{_suggest(str(key), tree, prefix)}",
                                    source=source, show_value=False)
            if isinstance(node, Leaf):
                self.put(node, raw, source)
            elif isinstance(raw, dict):
                self._add_mapping(raw, node, path + ".", source)
            else:
                raise SettingsError(path, "must be a mapping (a settings section)", raw, source)

    def add_override(self, item: str) -> None:
        source = Source("set", item)
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SettingsError("--set", "must look like dotted.key=value", item) from None
        leaf = LEAVES.get(key)
        if leaf is not None:
            self.put(leaf, raw, source)
            return
        parent, _, name = key.rpartition(".")
        parent_leaf = LEAVES.get(parent)
        if parent_leaf is not None and parent_leaf.kind == "commands" and name:
            self._put_text_command(parent_leaf, name, raw, source)
            return
        raise SettingsError(key, f"is not a known setting{_suggest_path(key)}", source=source, show_value=False)


def _suggest(key: str, tree: dict[str, Any], prefix: str) -> str:
    close = difflib.get_close_matches(key, list(tree), n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else f"; known keys here: {', '.join(sorted(tree))}"


def _suggest_path(path: str) -> str:
    close = difflib.get_close_matches(path, list(LEAVES), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _parse_error_position(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f" (line {mark.line + 1}, column {mark.column + 1})"
    if isinstance(exc, json.JSONDecodeError):
        return f" (line {exc.lineno}, column {exc.colno})"
    return ""
