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
    def read(cls, head: bytes) -> "RequestHead | None":
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


def relayable(head: RequestHead) -> Relayable | None:
    """The facts of a request the fast path may relay: HTTP/1.1 keep-alive, a method of
    :data:`FAST_METHODS`, a path ``/sessions/S/agents/A/api/...`` with plain ids, a ``Host``,
    no body or one ``Content-Length`` up to :data:`MAX_BODY`, no ``Transfer-Encoding``,
    ``Expect`` or ``Upgrade``. None for any other request (the full path answers it)."""
    if not head.complete or not head.keep_alive or head.method not in FAST_METHODS:
        return None
    parts = head.url.split(b"/", 6)
    if len(parts) < 7 or parts[0] or parts[1] != b"sessions" or parts[3] != b"agents" or parts[5] != b"api":
        return None
    length, has_length = 0, False
    host = authorization = api_key = None
    for name, value in head.headers:
        lower = name.lower()
        if lower == b"content-length":
            if has_length or not value.isdigit():
                return None  # several lengths, or a malformed one: the full path refuses it
            length, has_length = int(value), True
        elif lower in _REFUSED:
            return None
        elif lower == b"host" and host is None:
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
