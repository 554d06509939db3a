"""One kept-alive connection to an agent's API: the protocol that sends a request and reads its answer.

The proxy passes bytes: it never needs cookies, redirects, decompression, retries of
bodies, proxies from the environment or per-request options, which a general client
sets up for every request. A connection writes the request head the proxy built (one
``write``), feeds the answer to llhttp (:class:`.answer.Answer`), whose body waits in an
:class:`.buffer.AnswerBuffer` for the relay, and goes back to its :class:`.pool.UpstreamPool`
for the next request when the answer ended cleanly.

Flow control both ways (:class:`.flow.FlowControl`): a body that arrives faster than the relay
takes it pauses reading from the agent, and writing a request body waits while the agent does
not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING

import httptools

from .answer import MAX_HEAD, Answer, UpstreamError, head_too_large
from .buffer import AnswerBuffer
from .flow import FlowControl

if TYPE_CHECKING:
    from .pool import UpstreamPool

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class Connection(asyncio.Protocol):
    """One connection to an agent, and the answer to its current request (:attr:`answer`, its
    body in :attr:`body`)."""

    # No instance dict: one of these lives for every stream relayed (idle streams held open included).
    __slots__ = ("key", "_pool", "_loop", "transport", "flow", "body", "answer", "spilled", "_in_use", "_head",
                 "_on_head", "_got_bytes", "_writing", "_idle_timer")

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self.key = key
        """The agent's host and port."""
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.flow = FlowControl(self._loop)
        self.body = AnswerBuffer(self.flow, self._loop)
        """The body of the current answer, and the ways to hand it on."""
        self.answer = Answer(self.body, self._head_arrived)
        """The head of the current answer (status, reason, headers)."""
        self.spilled = False
        """The agent sent bytes beyond its answer, or bytes that are not HTTP, and some were passed on."""
        self._in_use = False
        self._head: asyncio.Future[None] | None = None
        self._on_head: Callable[[Exception | None], None] | None = None
        self._got_bytes = False
        self._writing: asyncio.Task[None] | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = self.flow.transport = transport  # type: ignore[assignment]  # a TCP stream's transport is a Transport

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        answer, body = self.answer, self.body
        if not self._in_use or body.complete:  # bytes while idle, or after the answer's end
            self._retire(spilled=False)
            return
        if body.raw is not None and not body.ended:
            body.raw(data)  # on its way before it is parsed: parsing only tells where the answer ends
        if not answer.head_in:  # every byte so far belongs to the head (the body follows it)
            answer.head_bytes += len(data)
        try:
            answer.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the agent switched protocols, which the proxy does not pass"))
            self.close()
        except httptools.HttpParserError as exc:
            if answer.complete:  # a second answer, or bytes that are none, after the first one's end
                self._retire(spilled=body.raw is not None)
            else:
                cause = exc.__context__  # what a callback raised: a head over the bounds
                self._fail(cause if isinstance(cause, UpstreamError) else
                           UpstreamError(f"the agent's answer is not valid HTTP: {exc}"))
                self.spilled = body.raw is not None
                self.close()
        else:
            if not answer.head_in and answer.head_bytes > MAX_HEAD:  # no end of the head in sight
                self._fail(head_too_large())
                self.close()
        if answer.head_in and self._on_head is not None:  # after the parse: a body in these bytes is in too
            on_head, self._on_head = self._on_head, None
            on_head(None)

    def eof_received(self) -> bool | None:
        answer, body = self.answer, self.body
        if answer.head_in and not body.complete and body.error is None and answer.read_to_end():
            answer.finish(reusable=False)  # an answer without a length ends with the connection
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.flow.abort(UpstreamError("the agent closed the connection"))
        if not self.body.complete:
            self._fail(UpstreamError(f"the agent closed the connection: {exc}" if exc else
                                     "the agent closed the connection"))
        self.transport = self.flow.transport = None

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # --- sending a request ------------------------------------------------------------------------

    def send(self, method: str, request: bytes, on_head: Callable[[Exception | None], None]) -> None:
        """Send a whole request (head and body in ``request``) and call ``on_head(None)`` once the
        answer's head is in, from the callback that brought it, after the rest of those bytes is
        parsed (a short answer is then complete); or ``on_head(error)`` when no answer comes. No
        task, no future: what the proxy's fast path uses on a kept connection."""
        self._on_head = on_head
        self._begin(method, request)

    async def start(self, method: str, head: bytes, body: AsyncIterable[bytes] | None,
                    chunked: bool = False) -> None:
        """Send a request (its ``head``, then ``body`` as it comes, as chunks when ``chunked``) and
        return once the answer's head is in. Raises :class:`.answer.UpstreamError` when no answer
        comes; the connection is closed then (and when the caller leaves)."""
        self._head = self._loop.create_future()
        try:
            self._begin(method, head)
            if body is not None:
                self._writing = self._loop.create_task(self._write_body(body, chunked))
            await self._head
        except BaseException:  # no answer (or the caller left): the connection is in an unknown state
            self.close()
            raise

    def may_retry(self, method: str, has_body: bool) -> bool:
        """Whether a request that failed here may go again on a new connection: the agent sent
        nothing for it (a kept connection it closed meanwhile, or a handler of the agent's that
        failed and closed the connection) and it is idempotent, without a body."""
        return not self._got_bytes and not has_body and method in IDEMPOTENT

    def _begin(self, method: str, head: bytes) -> None:
        """Ready the connection for the answer to a request, and send the request's ``head``."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._in_use = True
        self.body.begin(head_only=method == "HEAD")
        self.answer.begin()
        self._got_bytes = False
        self.transport.write(head)  # type: ignore[union-attr]  # connected before a request

    async def _write_body(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        transport = self.transport
        try:
            async for chunk in body:
                if transport is None or transport.is_closing():
                    return
                if not chunk:
                    continue
                if chunked:  # the caller sent no length: each piece goes as a chunk of its own
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                await self.flow.drain()
            if chunked and transport is not None and not transport.is_closing():
                transport.write(b"0\r\n\r\n")
        except UpstreamError:
            pass  # the answer reports it
        except Exception as exc:  # noqa: BLE001 - the caller's body failed: the request cannot complete
            self._fail(UpstreamError(f"the request body broke off: {exc or type(exc).__name__}"))
            self.close()

    # --- the relay's side ---------------------------------------------------------------------------

    def pass_through(self, raw: Callable[[bytes], None]) -> bool:
        """Once the body is diverted (:meth:`.buffer.AnswerBuffer.divert`): hand every further byte
        of a chunked answer to ``raw`` as it came from the agent, chunk framing and the last chunk
        included, before it is parsed (the pieces ``divert`` returned go first, framed by the
        caller). True when that is so; False, and nothing changed, when the answer is not chunked,
        has ended, or a chunk is part-way in."""
        body = self.body
        if not body.diverted or body.ended or self.answer.in_chunk or not self.answer.chunked():
            return False
        body.pass_through(raw)
        return True

    def release(self) -> None:
        """Done with the answer: keep the connection for another request if it ended cleanly, else close it."""
        if self.body.complete and self.answer.reusable and self.transport is not None and \
                (self._writing is None or self._writing.done()):
            self._in_use = False
            self._head = self._on_head = self._writing = None
            self.spilled = False
            if self.flow.reading_paused:  # a kept connection reads its next answer
                self.flow.resume_reading()
            self._pool.keep(self)
        else:
            self.close()

    def close(self) -> None:
        """Close the connection (the agent sees the caller go away)."""
        if self._writing is not None and not self._writing.done():
            self._writing.cancel()
        if self.transport is not None:
            self.transport.close()

    # --- the pool's side ----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while the connection may carry a request (it is not closed or closing)."""
        return self.transport is not None and not self.transport.is_closing()

    def idle_for(self, seconds: float) -> None:
        """Kept unused in the pool: closed after ``seconds`` unless a request takes it first."""
        self._idle_timer = self._loop.call_later(seconds, self.close)

    # --- internals ---------------------------------------------------------------------------------

    def _head_arrived(self) -> None:
        if self._head is not None and not self._head.done():
            self._head.set_result(None)

    def _retire(self, spilled: bool) -> None:
        """Bytes beyond the answer: the connection is never used again (what follows an answer that
        was not asked for would be taken as the next request's answer)."""
        self.answer.reusable = False
        self.spilled = self.spilled or spilled
        self.close()

    def _fail(self, error: Exception) -> None:
        self.body.fail(error)
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        if self._on_head is not None and not self.answer.head_in:
            on_head, self._on_head = self._on_head, None
            on_head(self.body.error or error)
