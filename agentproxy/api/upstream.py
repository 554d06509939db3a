"""The HTTP/1.1 client of the reverse proxy: kept-alive connections to agents' APIs.

The proxy passes bytes: it never needs cookies, redirects, decompression, retries of
bodies, proxies from the environment or per-request options, which a general client
sets up for every request. This one writes the request head the proxy built (one
``write``), parses the answer with llhttp (:mod:`httptools`) and hands the body on
chunk by chunk as it arrives, keeping the connection for the next request when the
answer ended cleanly.

Flow control both ways: a body that arrives faster than the caller takes it pauses
reading from the agent, and writing a request body waits while the agent does not read.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import AsyncIterable, Callable
from urllib.parse import urlsplit

import httptools

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection to an agent (answers themselves have no time limit: streams)."""
IDLE_TIMEOUT = 30.0
"""Seconds a kept connection may stay unused before it is closed."""
MAX_IDLE = 32
"""Kept connections per agent at most; more are closed when released."""
HIGH_WATER = 256 * 1024
"""Bytes of an answer buffered here beyond which reading from the agent pauses."""
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
MAX_HEAD = 64 * 1024
"""Bytes of an answer's head (status lines and header lines, interim answers' included) beyond which
the answer is refused: the proxy holds a head whole before it passes it on."""
MAX_HEADERS = 100
"""Header lines of an answer beyond which it is refused (``100 Continue`` answers' included)."""
_REASON = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
"""A reason phrase as RFC 9112 allows it (HTAB, SP, visible characters, obs-text): no control bytes."""


class UpstreamError(ConnectionError):
    """The agent could not be reached, or broke off the conn."""


class _Surplus(Exception):
    """An agent's bytes go on beyond the end of its answer (raised to stop llhttp there)."""


class Connection(asyncio.Protocol):
    """One connection to an agent, and the answer to its current request."""

    def __init__(self, pool: UpstreamPool, key: tuple[str, int]) -> None:
        self._pool = pool
        self.key = key
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[bytes, bytes]] = []
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused = False
        self._eof = False
        self._error: Exception | None = None
        self._complete = False
        self._got_bytes = False
        self._head_only = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._sink: Callable[[bytes], None] | None = None
        self._on_head: Callable[[Exception | None], None] | None = None
        self._head_in = False
        self._in_head = False
        """Between an answer's status line and the end of its head (later header lines are trailers)."""
        self._head_size = 0
        self._head_count = 0
        self._raw: Callable[[bytes], None] | None = None
        self._in_chunk = False
        self.passed = 0
        """Body bytes handed on as they came (see :meth:`pass_through`)."""
        self.spilled = False
        """The agent sent bytes beyond its answer, or bytes that are not HTTP, and some were passed on."""

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP stream's transport is a Transport

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._parser is None or self._complete:  # bytes while idle, or after the answer's end
            self._retire(spilled=False)
            return
        if self._raw is not None and not self._eof:
            self._raw(data)  # on its way before it is parsed: parsing only tells where the answer ends
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the agent switched protocols, which the proxy does not pass"))
            self.close()
        except httptools.HttpParserError as exc:
            if self._complete:  # a second answer, or bytes that are none, after the first one's end
                self._retire(spilled=self._raw is not None)  # type: ignore[unreachable]  # feed_data's callbacks set _complete
            else:
                cause = exc.__context__  # what a callback raised: a head over the bounds
                self._fail(cause if isinstance(cause, UpstreamError) else
                           UpstreamError(f"the agent's answer is not valid HTTP: {exc}"))
                self.spilled = self._raw is not None
                self.close()
        else:
            if not self._head_in:  # every byte so far belongs to the head (the body follows it)
                self._head_size += len(data)
                if self._head_size > MAX_HEAD:
                    self._fail(self._head_too_large())
                    self.close()
        if self._head_in and self._on_head is not None:  # after the parse: a body in these bytes is in too
            on_head, self._on_head = self._on_head, None
            on_head(None)

    def eof_received(self) -> bool | None:
        if self._head_in and not self._complete and self._error is None and self._read_to_end():
            self._finish(reusable=False)  # an answer without a length ends with the connection
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool._forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(UpstreamError("the agent closed the connection"))
        if not self._complete:
            self._fail(UpstreamError(f"the agent closed the connection: {exc}" if exc else
                                     "the agent closed the connection"))
        self.transport = None

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- llhttp callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request: llhttp stops here, before its status line
            raise _Surplus()
        self._in_head = True

    def on_chunk_header(self) -> None:
        self._in_chunk = True

    def on_chunk_complete(self) -> None:
        self._in_chunk = False

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # a trailer field of a chunked body: never part of the head passed on
            return
        self._head_count += 1
        if self._head_count > MAX_HEADERS:
            raise self._head_too_large()
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self._parser.get_status_code()  # type: ignore[union-attr]  # it calls this
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            self.headers, self.reason = [], ""
            return
        # A head that ends in the bytes being parsed is measured here (the bytes of earlier pieces
        # are counted as they come): its lines as llhttp gave them, each with its separators.
        if len(self.reason) + 15 + sum(len(n) + len(v) + 4 for n, v in self.headers) > MAX_HEAD:
            raise self._head_too_large()
        if not _REASON.fullmatch(self.reason):  # control bytes: the standard phrase is said instead
            self.reason = ""
        self.status = status
        self._head_in = True
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:  # the answer to HEAD has no body, whatever its headers say
            self._finish(reusable=False)

    def on_body(self, body: bytes) -> None:
        if self._raw is not None:
            self.passed += len(body)
            return
        if self._sink is not None:
            self._sink(body)
            return
        self._chunks.append(body)
        self._buffered += len(body)
        self._wake()
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        if self.status == 0:  # the end of an interim answer
            return
        self._finish(reusable=self._parser.should_keep_alive())  # type: ignore[union-attr]  # it calls this

    # --- the caller's side ------------------------------------------------------------------------

    def _begin(self, method: str, head: bytes) -> None:
        """Ready the connection for the answer to a request, and send the request's ``head``."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = method == "HEAD"
        self._got_bytes = False
        self.transport.write(head)  # type: ignore[union-attr]  # connected before a request

    def _start(self, method: str, head: bytes, body: AsyncIterable[bytes] | None,
               chunked: bool = False) -> asyncio.Future[None]:
        self._head = self._loop.create_future()
        self._begin(method, head)
        if body is not None:
            self._writing = self._loop.create_task(self._write_body(body, chunked))
        return self._head

    def send(self, method: str, request: bytes, on_head: Callable[[Exception | None], None]) -> None:
        """Send a whole request (head and body in ``request``) and call ``on_head(None)`` once the
        answer's head is in, from the callback that brought it, after the rest of those bytes is
        parsed (a short answer is then complete); or ``on_head(error)`` when no answer comes. No
        task, no future: what the proxy's fast path uses on a kept connection."""
        self._on_head = on_head
        self._begin(method, request)

    def may_retry(self, method: str, has_body: bool) -> bool:
        """Whether a request that failed here may go again on a new connection: the agent sent
        nothing for it (a kept connection it closed meanwhile) and it is idempotent, without a body."""
        return not self._got_bytes and not has_body and method in IDEMPOTENT

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
                if self._drained is not None and not self._drained.done():
                    await self._drained
            if chunked and transport is not None and not transport.is_closing():
                transport.write(b"0\r\n\r\n")
        except UpstreamError:
            pass  # the answer reports it
        except Exception as exc:  # noqa: BLE001 - the caller's body failed: the request cannot complete
            self._fail(UpstreamError(f"the request body broke off: {exc or type(exc).__name__}"))
            self.close()

    async def read(self) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at its end. Raises :class:`UpstreamError`."""
        while not self._chunks:
            if self._eof:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    def whole_body(self) -> bytes | None:
        """The body, when the answer is complete and arrived in one piece (not for HEAD); else ``None``
        and nothing is taken."""
        if not self._complete or self._head_only or self._error is not None or len(self._chunks) > 1:
            return None
        body = self._chunks.popleft() if self._chunks else b""
        self._buffered = 0
        return body

    def divert(self, sink: Callable[[bytes], None]) -> list[bytes]:
        """Hand every further piece of the body to ``sink`` the moment it arrives (no task switch
        in between); the pieces that arrived before are returned, to be passed on first."""
        pending = list(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self.resume()
        self._sink = sink
        return pending

    def pass_through(self, raw: Callable[[bytes], None]) -> bool:
        """Once :meth:`divert` is on: hand every further byte of a chunked answer to ``raw`` as it
        came from the agent, chunk framing and the last chunk included, before it is parsed (the
        pieces :meth:`divert` returned go first, framed by the caller). True when that is so;
        False, and nothing changed, when the answer is not chunked, has ended, or a chunk is
        part-way in."""
        if self._sink is None or self._eof or self._in_chunk or not self._chunked():
            return False
        self._raw = raw
        return True

    def _chunked(self) -> bool:
        """True when the answer's only transfer coding is ``chunked`` (said once)."""
        codings = [value.strip().lower() for name, value in self.headers if name.lower() == b"transfer-encoding"]
        return codings == [b"chunked"]

    def pause(self) -> None:
        """Stop reading from the agent (the caller cannot take more for now); wakes :meth:`wait`."""
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def resume(self) -> None:
        """Read from the agent again."""
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    @property
    def paused(self) -> bool:
        """True while reading from the agent is paused."""
        return self._paused

    @property
    def ended(self) -> bool:
        """True once the answer is complete or broke off."""
        return self._eof

    async def wait(self) -> None:
        """Until the answer ends or reading pauses (with a sink: the body goes there meanwhile).
        Raises :class:`UpstreamError` when the answer broke off."""
        while not self._eof and not self._paused:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._eof and self._error is not None:
            raise self._error

    def release(self) -> None:
        """Done with the answer: keep the connection for another request if it ended cleanly, else close it."""
        if self._complete and self._reusable and self.transport is not None and \
                (self._writing is None or self._writing.done()):
            self._reset()
            self._pool._keep(self)
        else:
            self.close()

    def close(self) -> None:
        """Close the connection (the agent sees the caller go away)."""
        if self._writing is not None and not self._writing.done():
            self._writing.cancel()
        if self.transport is not None:
            self.transport.close()

    # --- internals ---------------------------------------------------------------------------------

    _reusable = False

    def _head_too_large(self) -> UpstreamError:
        return UpstreamError(f"the agent's answer head is larger than {MAX_HEAD // 1024} KiB "
                             f"or {MAX_HEADERS} header lines")

    def _read_to_end(self) -> bool:
        """True when the answer's body has neither a length nor chunked framing: its end is the
        connection's (RFC 9112 section 6.3)."""
        codings = [value for name, value in self.headers if name.lower() == b"transfer-encoding"]
        if codings:
            return codings[-1].rsplit(b",", 1)[-1].strip().lower() != b"chunked"
        return not any(name.lower() == b"content-length" for name, _ in self.headers)

    def _retire(self, spilled: bool) -> None:
        """Bytes beyond the answer: the connection is never used again (what follows an answer that
        was not asked for would be taken as the next request's answer)."""
        self._reusable = False
        self.spilled = self.spilled or spilled
        self.close()

    def _finish(self, reusable: bool) -> None:
        self._complete = True
        self._reusable = reusable
        self._eof = True
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None and not self._complete:
            self._error = error
        self._eof = True
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        if self._on_head is not None and not self._head_in:
            on_head, self._on_head = self._on_head, None
            on_head(self._error or error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _reset(self) -> None:
        self._sink = self._raw = self._on_head = None
        self._in_chunk = self.spilled = self._head_in = self._in_head = False
        self.passed = self._head_size = self._head_count = 0
        self.status, self.reason, self.headers = 0, "", []
        self._parser = self._head = None
        self._complete = self._eof = self._reusable = False
        self._error = self._writing = None


class UpstreamPool:
    """Kept-alive connections to agents' APIs, by host and port; one per request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._open: set[Connection] = set()
        self._bases: dict[str, tuple[str, int, str]] = {}
        self.closed = False

    def address(self, base: str) -> tuple[str, int, str]:
        """Host, port and path prefix of an agent's base URL (parsed once per URL)."""
        found = self._bases.get(base)
        if found is None:
            parts = urlsplit(base)
            if parts.scheme != "http" or not parts.hostname:
                raise UpstreamError(f"the agent's URL {base!r} is not http://HOST[:PORT]")
            found = self._bases[base] = (parts.hostname, parts.port or 80, parts.path.rstrip("/"))
        return found

    def take_idle(self, key: tuple[str, int]) -> Connection | None:
        """A kept connection to ``key`` that is still open, taken out of the pool; None when there is none."""
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.transport is not None and not conn.transport.is_closing():
                return conn
        return None

    async def request(self, key: tuple[str, int], method: str, head: bytes,
                      body: AsyncIterable[bytes] | None = None, chunked: bool = False) -> Connection:
        """Send a request (its head complete, with the blank line) and return once the answer's head is in.

        ``body`` is written as it comes, as chunks when ``chunked`` (the head then says so).
        """
        if self.closed:
            raise UpstreamError("the proxy is shutting down")
        while (conn := self.take_idle(key)) is not None:
            try:
                return await self._send(conn, method, head, body, chunked)
            except UpstreamError:
                if not conn.may_retry(method, body is not None):
                    raise
        return await self._send(await self._connect(key), method, head, body, chunked)

    @staticmethod
    async def _send(conn: Connection, method: str, head: bytes, body: AsyncIterable[bytes] | None,
                    chunked: bool) -> Connection:
        try:
            await conn._start(method, head, body, chunked)
        except BaseException:  # no answer (or the caller left): the connection is in an unknown state
            conn.close()
            raise
        return conn

    async def _connect(self, key: tuple[str, int]) -> Connection:
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: Connection(self, key), key[0], key[1]), CONNECT_TIMEOUT)
        except TimeoutError:
            raise UpstreamError(f"connecting to {key[0]}:{key[1]} timed out after {CONNECT_TIMEOUT:g} s") from None
        except OSError as exc:
            raise UpstreamError(f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}") from None
        self._open.add(conn)
        return conn

    @property
    def connections(self) -> int:
        """How many connections to agents are open (kept or in use)."""
        return len(self._open)

    def _keep(self, conn: Connection) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if self.closed or len(idle) >= MAX_IDLE:
            conn.close()
            return
        idle.append(conn)
        conn._idle_timer = self.loop.call_later(IDLE_TIMEOUT, conn.close)

    def _forget(self, conn: Connection) -> None:
        self._open.discard(conn)
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    async def close(self) -> None:
        """Close every connection, kept or in use."""
        self.closed = True
        for conn in list(self._open):
            conn.close()
        self._idle.clear()
        await asyncio.sleep(0)

