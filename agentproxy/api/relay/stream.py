"""Passing a streamed answer on (Server-Sent Events, ...), on either door of the relay.

Each piece goes to the client from the very callback that received it from the agent, without a
task switch; a slow client pauses reading from the agent until its buffer drained. When either
side fails, both connections are cut (:func:`relaying`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from ..metrics import Tally
from .answer import UpstreamError
from .connection import Connection

log = logging.getLogger("agentproxy.api")

STREAM_HIGH_WATER = 256 * 1024
"""Bytes waiting to go to a client beyond which reading the agent's stream pauses."""
STREAM_DRAIN_POLL = 0.005
"""Seconds between looks at a slow client's buffer while the stream is paused."""


@contextlib.contextmanager
def relaying(answer: Connection, client: Callable[[], asyncio.BaseTransport | None]) -> Iterator[None]:
    """Around passing ``answer`` on to a client. When the block completes, the agent's connection
    is kept for another request. When either side fails, closing it tells the agent the client
    left, and cutting the client's connection (``client()``: its transport by then) is the only
    honest signal once headers are out. A client gone or an agent breaking off ends the block
    quietly (the latter logged); anything else, cancellation included, passes on after the same
    clean-up."""
    complete = False
    try:
        yield
        complete = True
    except ConnectionResetError:
        pass  # the client went away
    except (UpstreamError, OSError) as exc:
        log.info("agent %s:%s broke off mid-response: %s", *answer.key, exc or type(exc).__name__)
    finally:
        if complete:
            answer.release()
        else:
            answer.close()
            transport = client()
            if transport is not None:
                transport.close()


async def stream_body(transport: asyncio.Transport, framed: bool, answer: Connection, tally: Tally,
                      raw: bool = False) -> bool:
    """Pass a body of unknown length (Server-Sent Events, ...) on piece by piece, written to the
    client from the very callback that received it from the agent, each piece counted in ``tally``.

    The headers are out already, so the pieces follow on the same connection, framed as chunks
    when ``framed``. With ``raw`` (and ``framed``), a chunked answer's bytes go on as they came,
    before they are parsed, the agent's last chunk included: then True is returned, and the
    caller ends the body with nothing of its own. Raises :class:`ConnectionResetError` when the
    client leaves and :class:`.answer.UpstreamError` when the agent breaks off.
    """
    body = answer.body

    def put(data: bytes, frame: bool) -> bool:
        """Write ``data`` (as one chunk when ``frame``); False when the client left (reading stops,
        the handler is cancelled)."""
        if transport.is_closing():
            body.pause()
            return False
        if frame:
            transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            transport.write(data)
        if transport.get_write_buffer_size() > STREAM_HIGH_WATER:
            body.pause()
        return True

    def sink(data: bytes) -> None:
        if put(data, framed):
            tally.value += len(data)

    def unparsed(data: bytes) -> None:
        put(data, False)

    pending = body.divert(sink)
    passed = raw and framed and answer.pass_through(unparsed)
    for data in pending:
        sink(data)
    try:
        while True:
            await body.wait()
            if body.ended:
                if answer.spilled:
                    raise UpstreamError("the agent sent more than its answer")
                return passed
            if transport.is_closing():
                raise ConnectionResetError("the client left")
            while transport.get_write_buffer_size() > STREAM_HIGH_WATER // 4:  # a slow client
                await asyncio.sleep(STREAM_DRAIN_POLL)
                if transport.is_closing():
                    raise ConnectionResetError("the client left")
            body.resume()
    finally:
        tally.value += body.passed
