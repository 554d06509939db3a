"""An agent's answer as the proxy's fast path writes it to its client.

The head carries the agent's end-to-end headers (:func:`.rules.kept_response_headers`), with
chunked framing when the body has no length. A short answer goes out in one write once it is
all here. Otherwise the body follows as it comes (:func:`.stream.stream_body`, a chunked
answer's bytes passed on as they came). Errors of the fast path's own look exactly like the
full path's JSON errors.
"""

from __future__ import annotations

import asyncio
import json
from http import HTTPStatus

from ..errors import ApiError, error_body
from ..metrics import Tally
from .connection import Connection
from .rules import kept_response_headers
from .stream import relaying, stream_body

_NO_BODY_STATUS = frozenset({204, 304})
_JSON = b"Content-Type: application/json\r\n"


def answer_head(conn: Connection, closing: bool) -> tuple[list[bytes], bool]:
    """The lines of the head of ``conn``'s answer for the client (``Connection: close`` when
    ``closing``), and whether its body goes in chunks (it has no length, and the status allows a body)."""
    answer = conn.answer
    kept = kept_response_headers(answer.headers)
    sized = any(name.lower() == b"content-length" for name, _ in kept)
    status = answer.status
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, (answer.reason or phrase(status)).encode("latin-1"))]
    lines += [name + b": " + value + b"\r\n" for name, value in kept]
    framed = not sized and status not in _NO_BODY_STATUS and status >= 200
    if framed:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    if closing:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return lines, framed


def write_whole(transport: asyncio.Transport, conn: Connection, closing: bool, tally: Tally) -> int | None:
    """Write ``conn``'s answer in one piece when it is all here (and release the agent's
    connection); its status, else None and nothing written."""
    lines, framed = answer_head(conn, closing)
    whole = conn.body.whole() if not framed else None
    if whole is None:
        return None
    status = conn.answer.status  # before release: that readies the connection for another answer
    lines.append(whole)
    transport.write(b"".join(lines))
    conn.release()
    tally.inc(len(whole))
    return status


async def write_streamed(transport: asyncio.Transport, conn: Connection, closing: bool, tally: Tally) -> int:
    """Write ``conn``'s answer as it comes; its status. When either side fails, both connections
    are cut (see :func:`.stream.relaying`)."""
    lines, framed = answer_head(conn, closing)
    status = conn.answer.status
    transport.write(b"".join(lines))
    with relaying(conn, lambda: transport):
        ended = await stream_body(transport, framed, conn, tally, raw=True)
        if framed and not ended:
            transport.write(b"0\r\n\r\n")
    return status


def write_error(transport: asyncio.Transport, error: ApiError) -> int:
    """Answer ``error`` as the full path's error middleware would; its status."""
    body = json.dumps(error_body(error.code, error.message, error.field)).encode()
    transport.write(b"HTTP/1.1 %d %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
        error.status, phrase(error.status).encode(), _JSON, len(body), body))
    return error.status


def phrase(status: int) -> str:
    """The standard reason phrase of ``status`` ("" for a status without one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
