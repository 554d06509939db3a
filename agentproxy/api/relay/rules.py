"""The rules both doors of the relay share (pure): which headers go on, how a request is framed
upstream, which part of a path is the agent's, and the error when an agent cannot be reached.

The aiohttp route (:mod:`.route`) and the fast path (:mod:`.fastpath`) build every request head
sent to an agent with :func:`upstream_head` and pass on every answer's headers through
:func:`kept_response_headers`, so that neither can answer or frame differently from the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from ...launch import AGENTAPI_HOST
from ..errors import ApiError

UPSTREAM_HOST = AGENTAPI_HOST
"""The Host header agentapi accepts."""

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
"""Headers that concern one connection only (RFC 9110 section 7.6.1); ``Proxy-*`` are dropped too."""

_DROPPED_REQUEST = HOP_BY_HOP | {
    "host", "expect",  # Host is replaced; an Expect was already answered by this server
    "content-length",  # the proxy frames the body itself (with Transfer-Encoding, hop-by-hop already)
    "authorization", "x-api-key",  # agentproxy's credentials are not the agent's business
    "x-forwarded-proto", "x-forwarded-host",  # set anew below
}
_DROPPED_REQUEST_RAW = frozenset(name.encode() for name in _DROPPED_REQUEST)
_DROPPED_RESPONSE_RAW = frozenset(name.encode() for name in HOP_BY_HOP)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose request says ``Content-Length: 0`` when it has no body."""


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names a ``Connection`` header lists, lower case (they are hop-by-hop too)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def upstream_head(method: str, target: str, raw_headers: Iterable[tuple[bytes, bytes]], *, remote: str | None,
                  scheme: str, host: str | None, length: int | None, chunked: bool = False) -> bytes:
    """The request head sent upstream, blank line included: the caller's end-to-end headers as
    they came, ``Host: localhost``, ``X-Forwarded-*`` and the body's framing (one pass over the
    raw headers).

    The framing is always the proxy's own, whatever the caller's headers say: ``Content-Length:
    length`` for a body of known length, ``Transfer-Encoding: chunked`` when ``chunked`` (the
    body came without a length and goes upstream in chunks), ``Content-Length: 0`` for a POST,
    PUT or PATCH without a body, else nothing. The caller's own framing headers are never passed
    on, so no ``Connection`` header can take them away while the body still follows (which the
    agent would read as the next request).
    """
    raw = raw_headers if isinstance(raw_headers, (list, tuple)) else list(raw_headers)
    named = connection_tokens(raw)
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {UPSTREAM_HOST}\r\n".encode()]
    append = lines.append
    forwarded_for = None
    for name, value in raw:
        lower = name.lower()
        if lower in _DROPPED_REQUEST_RAW or lower.startswith(b"proxy-") or lower in named:
            continue
        if lower == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        append(name + b": " + value + b"\r\n")
    caller = (remote or "unknown").encode()
    append(b"X-Forwarded-For: " + (caller if forwarded_for is None else forwarded_for + b", " + caller) + b"\r\n")
    append(b"X-Forwarded-Proto: " + scheme.encode() + b"\r\n")
    if host:
        append(b"X-Forwarded-Host: " + host.encode("latin-1") + b"\r\n")
    if chunked:
        append(b"Transfer-Encoding: chunked\r\n")
    elif length is not None:
        append(b"Content-Length: %d\r\n" % length)
    elif method in _BODY_METHODS:
        append(b"Content-Length: 0\r\n")
    append(b"\r\n")
    return b"".join(lines)


def kept_response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's raw headers less the hop-by-hop ones, in their order."""
    named = None
    kept = []
    for name, value in raw:
        lower = name.lower()
        if lower in _DROPPED_RESPONSE_RAW or lower.startswith(b"proxy-"):
            if lower == b"connection":
                named = connection_tokens(raw)
            continue
        kept.append((name, value))
    if named:
        kept = [(name, value) for name, value in kept if name.lower() not in named]
    return kept


def upstream_target(raw_path: str, depth: int = 6) -> str:
    """The agent's own path and query of a proxied request, as sent (still encoded).

    It follows the ``depth``-th ``/`` of ``raw_path``: ``/sessions/S/agents/A/api/REST``
    holds no other ``/`` before REST, as ids hold none.
    """
    parts = raw_path.split("/", depth)
    return "/" + parts[depth] if len(parts) > depth else "/"


def origin_form(target: str) -> str:
    """The path and query of a request target: as it is in origin form (``/path?query``); from an
    absolute-form target (``http://host/path?query``, RFC 9112 section 3.2.2), whose authority
    names this server and is no part of the agent's path."""
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def unreachable(agent_id: str, error: Exception) -> ApiError:
    """The error answered when the agent's API cannot be reached (502), on either path."""
    return ApiError(502, f"agent {agent_id!r} API is unreachable: {error}", code="bad_gateway")
