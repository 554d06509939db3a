"""The head of a proxied request as the fast path reads it (pure: bytes in, facts out).

:func:`head_end` finds where a head ends in the bytes a connection received, llhttp
(:mod:`httptools`) checks and splits it (:class:`RequestHead`), and :func:`relayable` says
whether it is a request the fast path may pass on unchanged and what it needs for that: the
session and agent named in the path, the body's length and the credentials presented.
"""

from __future__ import annotations

from dataclasses import dataclass

import httptools

FAST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
"""Methods the fast path relays (``HEAD``, ``OPTIONS`` and the rest go the full path)."""
MAX_BODY = 1024 * 1024
"""Request bodies up to this size are relayed whole; larger ones stream through the full path."""
_REFUSED = (b"transfer-encoding", b"expect", b"upgrade")
"""Headers of requests left to the full path: chunked bodies, ``100-continue``, protocol switches."""
MAX_FIELD = 8190
"""Bytes of a target, header name or value beyond which the full path judges the request (aiohttp's
``max_line_size`` and ``max_field_size``: it refuses longer ones)."""
MAX_HEADERS = 64
"""Header lines beyond which the full path judges the request (aiohttp refuses more than 128)."""
_SINGLETONS = frozenset({
    b"content-length", b"content-location", b"content-range", b"content-type", b"etag", b"host",
    b"max-forwards", b"server", b"transfer-encoding", b"user-agent",
})
"""Headers a request may say once (RFC 9110): aiohttp refuses a request that repeats one."""


class RequestHead:
    """The parts of one request head the fast path needs, as llhttp reports them."""

    __slots__ = ("parser", "url", "headers", "complete", "method", "keep_alive")

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        self.method = ""
        self.keep_alive = False

    @classmethod
    def read(cls, head: bytes) -> RequestHead | None:
        """The head in ``head`` (its blank line included), or None when llhttp refuses it or it
        asks for another protocol."""
        parsed = cls()
        try:
            parsed.parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return None
        return parsed if parsed.complete else None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # Read now: once a message without a body is complete, llhttp starts on the next one.
        parser = self.parser
        self.complete = True
        self.method = parser.get_method().decode("latin-1")
        self.keep_alive = parser.get_http_version() == "1.1" and parser.should_keep_alive()


def head_end(buffer: bytes | bytearray) -> int | None:
    """The length of the request head at the start of ``buffer`` (blank line included); 0 when the
    head is not framed by CRLF alone (the full path judges it); None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    bare = buffer.find(b"\n\n")
    if bare != -1 and (end == -1 or bare < end):
        return 0
    odd = buffer.find(b"\n\r\n")  # CRLFCRLF holds one at end + 1; an earlier one is a bare LF line
    if odd != -1 and (end == -1 or odd < end + 1):
        return 0
    if end == -1:
        return None
    return end + 4


@dataclass(frozen=True, slots=True)
class Relayable:
    """What the fast path needs of a request it may relay."""

    session: str
    agent: str
    length: int
    """The body's length (0 without a body)."""
    has_length: bool
    """The request said ``Content-Length``."""
    host: str
    authorization: str | None
    api_key: str | None


def relayable(head: RequestHead) -> Relayable | None:  # noqa: C901 - every fast-path rule in one pass per request
    """The facts of a request the fast path may relay: HTTP/1.1 keep-alive, a method of
    :data:`FAST_METHODS`, a path ``/sessions/S/agents/A/api/...`` with plain ids, a ``Host``,
    no body or one ``Content-Length`` up to :data:`MAX_BODY`, no ``Transfer-Encoding``,
    ``Expect`` or ``Upgrade``, nothing near aiohttp's limits and no header of :data:`_SINGLETONS`
    twice. None for any other request (the full path answers it, or refuses it)."""
    if not head.complete or not head.keep_alive or head.method not in FAST_METHODS:
        return None
    if len(head.url) > MAX_FIELD or len(head.headers) > MAX_HEADERS:
        return None
    parts = head.url.split(b"/", 6)
    if len(parts) < 7 or parts[0] or parts[1] != b"sessions" or parts[3] != b"agents" or parts[5] != b"api":
        return None
    length, has_length = 0, False
    host = authorization = api_key = None
    seen: set[bytes] = set()
    for name, value in head.headers:
        lower = name.lower()
        if len(name) > MAX_FIELD or len(value) > MAX_FIELD:
            return None
        if lower in _SINGLETONS:
            if lower in seen:
                return None  # several lengths, hosts, ...: the full path refuses the request
            seen.add(lower)
        if lower == b"content-length":
            if not value.isdigit():
                return None  # a malformed length: the full path refuses it
            length, has_length = int(value), True
        elif lower in _REFUSED:
            return None
        elif lower == b"host":
            host = value.decode("latin-1")
        elif lower == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif lower == b"x-api-key" and api_key is None:
            api_key = value.decode("latin-1")
    if host is None or length > MAX_BODY:
        return None
    try:
        session, agent = parts[2].decode("ascii"), parts[4].decode("ascii")
    except UnicodeDecodeError:
        return None
    return Relayable(session, agent, length, has_length, host, authorization, api_key)
