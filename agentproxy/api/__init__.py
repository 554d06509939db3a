"""The HTTP API: agents by session, their status events, and a reverse proxy to each agent's own API.

Names are imported on first use, so that ``agentproxy`` subcommands that do not
serve HTTP do not pay for loading aiohttp.

Modules:

- :mod:`.serve` runs the server (``serve.run_server``) over the application :mod:`.app`
  builds; :mod:`.context` is what its handlers share.
- Routes: :mod:`.agents` (create, list, get, delete, suspend, resume, logs), :mod:`.events`
  (``GET /events``), :mod:`.progress` (``GET .../progress``), :mod:`.hooks` (``POST /hooks/waiting``,
  what agents' hooks in pods report), :mod:`.health` (``/healthz``, ``/readyz``), :mod:`.openapi` with the
  create rules of :mod:`.schema_rules`, :mod:`.ui` (the dashboard's files).
- Requests and answers: :mod:`.params` (ids, query parameters, JSON bodies), :mod:`.model`
  (an agent's JSON), :mod:`.listing` (agents' JSON kept as bytes), :mod:`.errors` (JSON error
  bodies), :mod:`.logfilter` (one warning line for a malformed request), :mod:`.expect`
  (``Expect: 100-continue`` after the key check).
- Auth and metrics: :mod:`.auth` (who is calling, which agents they may see),
  :mod:`.metrics` and :mod:`.backend_metrics` (Prometheus).
- The reverse proxy: the package :mod:`.relay` (the aiohttp route, the fast path, the
  upstream pool and connections, the rules both share; its own module map),
  :mod:`.aiohttp_internals` (every private aiohttp name it relies on, each checked),
  :mod:`.waking` (resume on a request).
- :mod:`.culling`: the traffic clock and the culler (the rules are :mod:`agentproxy.idle`).
- :mod:`.compat`: the Go agentapi-proxy's session API over the same backend and proxy.
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
