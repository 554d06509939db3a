"""The fast path of proxied requests: the common request to a ready agent, without aiohttp's layers.

Most of what the proxy serves is small requests to agents that are ready (``GET .../api/status``,
``POST .../api/message``). For those, aiohttp's request object, router, middlewares and
response object cost more than the relay itself. Each connection starts on
:class:`FrontProtocol`, which reads a request head (:mod:`.request_head`) and, when the request is
one it can pass on unchanged to a ready agent the key may reach, relays it through the same
upstream pool and header rules as :mod:`.proxy`, counts it in the same metrics and notes it for
idle culling.

Anything else goes to aiohttp, byte for byte from the start of that request: the connection is
handed to aiohttp's own protocol, which then serves it to its end. That covers every API route,
every error (a missing key, an unknown or not ready agent, a malformed head: aiohttp answers them
as it always does), ``Expect``, upgrades, chunked and large bodies, ``HEAD`` and anything not
HTTP/1.1 keep-alive. So the fast path never answers differently from the full path; it only
answers sooner.

Each connection joins aiohttp's server as one of its connections, so a graceful shutdown
drains fast-path streams exactly like aiohttp's (see :meth:`FrontProtocol.shutdown`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..backends.base import AgentState, AgentStatus
from .app import CONTEXT
from .client_answer import write_error, write_streamed, write_whole
from .context import ApiContext
from .proxy import unreachable, upstream_head, upstream_target
from .request_head import Relayable, RequestHead, head_end, relayable
from .upstream import Connection, UpstreamError

log = logging.getLogger("agentproxy.api")

ROUTE_LABEL = "/sessions/{session}/agents/{agent}/api/{path}"
"""The route label of proxied requests in the metrics (aiohttp's canonical form of the route)."""
MAX_HEAD = 16 * 1024
"""Bytes of request head beyond which the request goes the full path (aiohttp applies its limits)."""
MAX_PENDING = 256 * 1024
"""Bytes of further (pipelined) requests buffered while one is relayed, beyond which reading pauses."""
KEEPALIVE_TIMEOUT = 75.0
"""Seconds a client connection may go without a whole request head, from its opening or from its
last answer: the keep-alive of an idle connection and the deadline of a head still being read, on
both paths (aiohttp's server gets it through :func:`server_options`; its own default is an hour)."""


def server_options() -> dict[str, Any]:
    """Options of aiohttp's server (:class:`aiohttp.web.AppRunner`), so that a connection handed to
    it keeps the deadline it had here: aiohttp closes a connection whose keep-alive runs out while it
    waits for a request, whether nothing or part of a head came."""
    return {"keepalive_timeout": KEEPALIVE_TIMEOUT}


class FrontProtocol(asyncio.Protocol):
    """One client connection: requests the fast path can relay are relayed here, the first one it
    cannot is handed with the rest of the connection to aiohttp's protocol."""

    _task_handler = None  # aiohttp's server looks for a handler task on each of its connections

    def __init__(self, site: FastPathSite) -> None:
        self.site = site
        self.ctx = site.ctx
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._task: asyncio.Task[None] | None = None
        """The relay in flight when it needs a task (a new connection to the agent, a streamed answer)."""
        self._waiting: Connection | None = None
        """The agent's connection while the relay in flight waits for its answer without a task."""
        self._settled: asyncio.Future[None] | None = None
        self._closing = False
        self._paused = False
        self._idle: asyncio.TimerHandle | None = None
        self._remote: str | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP stream's transport is a Transport
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, (list, tuple)) and peer else None
        self.site.server.connection_made(self, transport)
        self._idle = self.site.loop.call_later(KEEPALIVE_TIMEOUT, self._close_idle)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()
        elif len(self._buffer) > MAX_PENDING and not self._paused:
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]  # set once connected

    # A client's end of sending (eof_received) closes the connection, as it does on aiohttp's: the
    # relay in flight is abandoned, like a client leaving (what nginx and Go's server do too).

    def connection_lost(self, exc: Exception | None) -> None:
        self.site.server.connection_lost(self, exc)
        if self._idle is not None:
            self._idle.cancel()
        self.transport = None
        if self._task is not None:  # the client left: the relay closes the agent's connection
            self._task.cancel()
        if self._waiting is not None:
            self._waiting.close()  # its answer, or its end, reaches the relay as a client gone

    @property
    def _busy(self) -> bool:
        return self._task is not None or self._waiting is not None

    # --- aiohttp's server's view of a connection ----------------------------------------------------

    def close(self) -> None:
        """Close once the request in flight is answered (now, when there is none)."""
        self._closing = True
        if not self._busy and self.transport is not None:
            self.transport.close()

    async def shutdown(self, timeout: float | None) -> None:
        """Let the request in flight finish for up to ``timeout`` seconds, then cut it off."""
        self.close()
        if not self._busy:
            return
        self._settled = settled = self.site.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(settled), timeout)
        except TimeoutError:
            if self.transport is not None:
                self.transport.close()
            if self._task is not None:
                self._task.cancel()
            if self._waiting is not None:
                self._waiting.close()
            await settled
        if self.transport is not None:
            self.transport.close()

    # --- requests ------------------------------------------------------------------------------------

    def _next(self) -> None:
        """Start on the request at the head of the buffer, if it is all here."""
        if self.transport is None:
            return
        if self._closing:
            self.transport.close()
            return
        if not self._buffer:
            return
        end = head_end(self._buffer)
        if end is None:
            if len(self._buffer) > MAX_HEAD:
                self._hand_over()
            return
        if end == 0 or end > MAX_HEAD:
            self._hand_over()
            return
        head = RequestHead.read(bytes(self._buffer[:end]))
        wanted = None if head is None else relayable(head)
        state = None if wanted is None else self._agent(wanted)
        if state is None:
            self._hand_over()
            return
        assert head is not None and wanted is not None
        length = wanted.length
        if len(self._buffer) < end + length:
            return  # the body is still on its way
        request = bytes(self._buffer[:end + length])
        del self._buffer[:end + length]
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.site.relayed += 1
        self._begin(head, wanted, state, request[end:])

    def _agent(self, wanted: Relayable) -> AgentState | None:
        """The agent a relayable request names, when it is ready and the key presented may reach it."""
        ctx = self.ctx
        principal = ctx.auth.holder(wanted.authorization, wanted.api_key)
        if principal is None or ctx.client is None:
            return None
        state = ctx.backend.peek(wanted.session, wanted.agent)
        if state is None or state.status is not AgentStatus.READY or not state.upstream or not principal.can_see(state):
            return None
        return state

    def _hand_over(self) -> None:
        """Give the connection, from the request at the head of the buffer on, to aiohttp."""
        transport = self.transport
        assert transport is not None and not self._busy
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.site.server.connection_lost(self, None)
        self.site.handed_over += 1
        handler = self.site.server()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        data, self._buffer = bytes(self._buffer), bytearray()
        self.transport = None
        if data:
            handler.data_received(data)

    def _begin(self, head: RequestHead, wanted: Relayable, state: AgentState, body: bytes) -> None:
        """Relay one request: on a kept connection to the agent without a task, the answer written
        from the very callback that brought it; else in a task that connects first."""
        ctx = self.ctx
        ctx.traffic.touch(state.id)
        started = time.perf_counter()
        pool = ctx.client
        assert pool is not None
        try:
            host, port, prefix = pool.address(state.upstream)  # type: ignore[arg-type]  # a relayed agent has one
        except UpstreamError:
            conn = None  # the task reports it
        else:
            conn = pool.take_idle((host, port))
        if conn is None:
            self._task = self.site.loop.create_task(self._relay(head, wanted, state, body, started))
            return
        request = self._request(head, wanted, prefix, body)
        self._waiting = conn
        conn.send(head.method, request, lambda error: self._answered(conn, head, wanted, state, body, started, error))

    def _answered(self, conn: Connection, head: RequestHead, wanted: Relayable, state: AgentState, body: bytes,
                  started: float, error: Exception | None) -> None:
        """The head of the agent's answer is in (or none will come) on a kept connection."""
        self._waiting = None
        transport = self.transport
        if transport is None or transport.is_closing():
            conn.close()
            self._done(head.method, 499, started)
            return
        if error is not None:
            if conn.may_retry(head.method, bool(body)) and not self._closing:
                # A kept connection the agent closed meanwhile: again, on a new one.
                self._task = self.site.loop.create_task(self._relay(head, wanted, state, body, started))
                return
            self._done(head.method, write_error(transport, unreachable(state.id, error)), started)
            return
        self.ctx.metrics.proxy_bytes_in.inc(len(body))
        status = write_whole(transport, conn, self._closing, self.ctx.metrics.proxy_bytes_out)
        if status is None:  # a body still on its way: streamed by a task
            self._task = self.site.loop.create_task(self._streamed(head.method, conn, started))
            return
        self._done(head.method, status, started)

    async def _streamed(self, method: str, answer: Connection, started: float) -> None:
        status = 499
        try:
            status = await self._stream_answer(answer)
        except asyncio.CancelledError:
            pass  # the client went away (or the shutdown drain ended)
        finally:
            self._task = None
            self._done(method, status, started)

    async def _relay(self, head: RequestHead, wanted: Relayable, state: AgentState, body: bytes,
                     started: float) -> None:
        """The relay of one request over a new connection to the agent (a task)."""
        method = head.method
        status = 499
        try:
            status = await self._exchange(head, wanted, state, body)
        except asyncio.CancelledError:
            status = 499  # the client went away (or the shutdown drain ended)
        except Exception:  # noqa: BLE001 - never a traceback to the client; the connection ends
            log.exception("%s %s: unexpected error in the proxy", method, head.url.decode("latin-1"))
            status = 500
            if self.transport is not None:
                self.transport.close()
        finally:
            self._task = None
            self._done(method, status, started)

    def _done(self, method: str, status: int, started: float) -> None:
        """Count the request answered; then take the next one."""
        self.ctx.metrics.observe(method, ROUTE_LABEL, status, time.perf_counter() - started)
        if self._settled is not None and not self._settled.done():
            self._settled.set_result(None)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        self._idle = self.site.loop.call_later(KEEPALIVE_TIMEOUT, self._close_idle)
        self._next()

    def _request(self, head: RequestHead, wanted: Relayable, prefix: str, body: bytes) -> bytes:
        """The request as the agent gets it: head and body in one piece."""
        request = upstream_head(head.method, prefix + upstream_target(head.url.decode("latin-1")), head.headers,
                                remote=self._remote, scheme="http", host=wanted.host,
                                length=wanted.length if wanted.has_length else None)
        return request + body if body else request

    async def _exchange(self, head: RequestHead, wanted: Relayable, state: AgentState, body: bytes) -> int:
        """The relay of one request over a new connection; the status answered."""
        pool = self.ctx.client
        assert pool is not None
        transport = self.transport
        assert transport is not None
        try:
            host, port, prefix = pool.address(state.upstream)  # type: ignore[arg-type]  # a relayed agent has one
            answer = await pool.request((host, port), head.method, self._request(head, wanted, prefix, body))
        except UpstreamError as exc:
            return write_error(transport, unreachable(state.id, exc))
        self.ctx.metrics.proxy_bytes_in.inc(len(body))
        status = write_whole(transport, answer, self._closing, self.ctx.metrics.proxy_bytes_out)
        return status if status is not None else await self._stream_answer(answer)

    async def _stream_answer(self, answer: Connection) -> int:
        transport = self.transport
        assert transport is not None
        return await write_streamed(transport, answer, self._closing, self.ctx.metrics.proxy_bytes_out)

    def _close_idle(self) -> None:
        self._idle = None
        if not self._busy and self.transport is not None:
            self.transport.close()


class FastPathSite(web.BaseSite):
    """A TCP site of an :class:`aiohttp.web.AppRunner` whose connections start on the fast path.

    Served like :class:`aiohttp.web.TCPSite`; the app must be made by :func:`.app.create_app`.
    With aiohttp's access log on, every request goes the full path (the log sees each).
    """

    __slots__ = ("_host", "_port", "_sock", "loop", "ctx", "server", "relayed", "handed_over")

    def __init__(self, runner: web.AppRunner, host: str | None = None, port: int = 0, *,
                 sock: Any = None, backlog: int = 128) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._sock = host, port, sock
        self.ctx: ApiContext = runner.app[CONTEXT]
        self.server: Any = runner.server
        self.loop = asyncio.get_running_loop()
        self.relayed = 0
        """Requests the fast path relayed."""
        self.handed_over = 0
        """Connections handed to aiohttp's protocol."""

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _factory(self) -> Callable[[], asyncio.Protocol]:
        if logging.getLogger("aiohttp.access").isEnabledFor(logging.INFO):
            return self.server
        return lambda: FrontProtocol(self)

    async def start(self) -> None:
        await super().start()
        if self._sock is not None:
            self._server = await self.loop.create_server(self._factory(), sock=self._sock, backlog=self._backlog)
        else:
            self._server = await self.loop.create_server(self._factory(), self._host, self._port,
                                                         backlog=self._backlog, reuse_address=True)
