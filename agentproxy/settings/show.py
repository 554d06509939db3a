"""Print the effective settings as YAML, each non-default value with its source."""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml

from .load import LoadedSettings


def _scalar(value: Any) -> str:
    if isinstance(value, list):
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v for v in value]
    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def format_settings(loaded: LoadedSettings) -> str:
    """YAML of every setting; a trailing ``# from ...`` comment names the source
    of each value that is not the built-in default."""
    lines: list[str] = []

    def emit(obj: Any, prefix: str, indent: int) -> None:
        pad = "  " * indent
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            path = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:")
                emit(value, path + ".", indent + 1)
            elif isinstance(value, dict):
                lines.append(f"{pad}{f.name}:")
                for key, item in value.items():
                    lines.append(f"{pad}  {_scalar(key)}: {_scalar(item)}{_note(loaded, f'{path}.{key}')}")
            else:
                lines.append(f"{pad}{f.name}: {_scalar(value)}{_note(loaded, path)}")

    emit(loaded.settings, "", 0)
    return "\n".join(lines) + "\n"


def _note(loaded: LoadedSettings, path: str) -> str:
    source = loaded.source_of(path)
    return "" if source.kind == "default" else f"  # from {source}"
