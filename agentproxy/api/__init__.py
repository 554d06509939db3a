"""The HTTP API: agents by session, their status events, and a reverse proxy to each agent's own API.

Names are imported on first use, so that ``agentproxy`` subcommands that do not
serve HTTP do not pay for loading aiohttp.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONTEXT", "ApiKey", "create_app", "hash_key"]

_HOMES = {"CONTEXT": ".app", "create_app": ".app", "ApiKey": ".auth", "hash_key": ".auth"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home, __name__), name)
