"""Cross-origin answers of the agentapi-proxy routes, as the peer gives them (pure functions).

The peer answers its own routes (``/start``, ``/search``, ``/sessions/{id}``,
``/health``) to browser origins it allows: by default ``http(s)://localhost``
and ``http(s)://127.0.0.1`` on any port, or the origins configured. Every answer
of the session proxy route carries ``Access-Control-Allow-Origin: *`` and the
rest of :data:`PROXY_HEADERS`, whatever the agent answered.
"""

from __future__ import annotations

from urllib.parse import urlsplit

ALLOWED_METHODS = "GET, HEAD, PUT, PATCH, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = ("Origin, Content-Type, Accept, Authorization, X-Requested-With, X-Forwarded-For, "
                   "X-Forwarded-Proto, X-Forwarded-Host, X-API-Key")
MAX_AGE = "86400"

PROXY_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": ALLOWED_METHODS,
    "Access-Control-Allow-Headers": ALLOWED_HEADERS,
    "Access-Control-Allow-Credentials": "true",
    "Access-Control-Max-Age": MAX_AGE,
}
"""Set on every answer of ``ANY /{id}/...``."""

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1"})


def parse_origins(setting: str) -> frozenset[str]:
    """The origins of ``compat.agentapi_proxy.allowed_origins`` (comma-separated)."""
    return frozenset(part.strip() for part in setting.split(",") if part.strip())


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """True when a browser at ``origin`` may read the answers of the peer's own routes."""
    if not origin:
        return False
    if allowed:
        return origin in allowed
    try:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.hostname in _LOOPBACK_HOSTS and not parts.path
    except ValueError:  # a malformed port or address
        return False


def answer_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    """Headers for an answer of one of the peer's own routes to ``origin``."""
    headers = {"Vary": "Origin"}
    if origin_allowed(origin, allowed):
        headers.update({"Access-Control-Allow-Origin": origin or "", "Access-Control-Allow-Credentials": "true"})
    return headers


def preflight_headers(origin: str | None, allowed: frozenset[str]) -> dict[str, str]:
    """Headers for the 204 answer to a CORS preflight (``OPTIONS``) of one of the peer's own routes."""
    headers = answer_headers(origin, allowed)
    if "Access-Control-Allow-Origin" in headers:
        headers.update({"Access-Control-Allow-Methods": ALLOWED_METHODS,
                        "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": MAX_AGE})
    return headers
