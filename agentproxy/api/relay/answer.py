"""One answer of an agent as llhttp (:mod:`httptools`) reads it: the parser's sink.

It keeps the answer's head (status, reason, headers) within bounds, skips interim answers
(``100 Continue``) and trailers, hands the body to the connection's :class:`.buffer.AnswerBuffer`,
and tells where the answer ends: at its length, its last chunk, for ``HEAD`` at its head, and
never past its end (a second answer in the same bytes stops the parser, see :class:`Surplus`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httptools

from .buffer import AnswerBuffer

MAX_HEAD = 64 * 1024
"""Bytes of an answer's head (status lines and header lines, interim answers' included) beyond which
the answer is refused: the proxy holds a head whole before it passes it on."""
MAX_HEADERS = 100
"""Header lines of an answer beyond which it is refused (``100 Continue`` answers' included)."""
_REASON = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""A reason phrase as RFC 9112 allows it (HTAB, SP, visible characters, obs-text): no control bytes."""


class UpstreamError(ConnectionError):
    """The agent could not be reached, or broke off the conn."""


class Surplus(Exception):
    """An agent's bytes go on beyond the end of its answer (raised to stop llhttp there)."""


def head_too_large() -> UpstreamError:
    """The error of an answer whose head is over :data:`MAX_HEAD` or :data:`MAX_HEADERS`."""
    return UpstreamError(f"the agent's answer head is larger than {MAX_HEAD // 1024} KiB "
                         f"or {MAX_HEADERS} header lines")


class Answer:
    """The head of one answer, where it ends, and its body passed to ``body`` (llhttp's callbacks).

    ``on_head`` is called once the head is in (an interim answer's aside).
    """

    __slots__ = ("parser", "status", "reason", "headers", "head_in", "head_bytes", "in_chunk", "reusable",
                 "_in_head", "_count", "_body", "_on_head", "on_body")

    def __init__(self, body: AnswerBuffer, on_head: Callable[[], None]) -> None:
        self._body = body
        self._on_head = on_head
        self.on_body = body.put
        """llhttp's callback of each piece of the body: straight into the buffer (no call in between)."""
        self.begin()

    def begin(self) -> None:
        """Ready for a new answer (kept per connection: its parser refers to it, and only to it)."""
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_in = False
        """True once the (final) head is in."""
        self.head_bytes = 0
        """Bytes received while the head was not in yet, those being parsed included (counted by the
        connection before it feeds them): the head is no larger."""
        self.in_chunk = False
        """True while part of a chunk is in (its framing has begun but not ended)."""
        self.reusable = False
        """The answer ended cleanly and the agent keeps the connection open."""
        self._in_head = False
        """Between an answer's status line and the end of its head (later header lines are trailers)."""
        self._count = 0

    @property
    def complete(self) -> bool:
        """True once the answer ended cleanly."""
        return self._body.complete

    def chunked(self) -> bool:
        """True when the answer's only transfer coding is ``chunked`` (said once)."""
        codings = [value.strip().lower() for name, value in self.headers if name.lower() == b"transfer-encoding"]
        return codings == [b"chunked"]

    def read_to_end(self) -> bool:
        """True when the answer's body has neither a length nor chunked framing: its end is the
        connection's (RFC 9112 section 6.3)."""
        codings = [value for name, value in self.headers if name.lower() == b"transfer-encoding"]
        if codings:
            return codings[-1].rsplit(b",", 1)[-1].strip().lower() != b"chunked"
        return not any(name.lower() == b"content-length" for name, _ in self.headers)

    def finish(self, reusable: bool) -> None:
        """The answer ended (cleanly)."""
        self.reusable = reusable
        self._body.finish()

    # --- llhttp callbacks -------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._body.complete:  # a second answer to one request: llhttp stops here, before its status line
            raise Surplus()
        self._in_head = True

    def on_chunk_header(self) -> None:
        self.in_chunk = True

    def on_chunk_complete(self) -> None:
        self.in_chunk = False

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # a trailer field of a chunked body: never part of the head passed on
            return
        self._count += 1
        if self._count > MAX_HEADERS:
            raise head_too_large()
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.reason = [], ""
            return
        # The head ends in the bytes being parsed: when they took the count over the bound, the head
        # itself is measured (its lines as llhttp gave them, each with its separators); else it is
        # within the bound already, which spares most answers the sum.
        if self.head_bytes > MAX_HEAD and \
                len(self.reason) + 15 + sum(len(n) + len(v) + 4 for n, v in self.headers) > MAX_HEAD:
            raise head_too_large()
        reason = self.reason
        if not (reason.isascii() and reason.isprintable()) and not _REASON.fullmatch(reason):
            self.reason = ""  # control bytes: the standard phrase is said instead (printable ASCII needs no regex)
        self.status = status
        self.head_in = True
        self._on_head()
        if self._body.head_only:  # the answer to HEAD has no body, whatever its headers say
            self.finish(reusable=False)

    def on_message_complete(self) -> None:
        if self.status == 0:  # the end of an interim answer
            return
        self.finish(reusable=self.parser.should_keep_alive())
