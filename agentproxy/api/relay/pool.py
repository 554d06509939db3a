"""The pool of kept-alive connections to agents' APIs that every relayed request goes through.

A request takes a kept connection to its agent when there is one (a kept connection the agent
closed meanwhile is tried again on a new one, for an idempotent request without a body), else
opens one (:class:`.connection.Connection`); a connection whose answer ended cleanly comes back
here for the next request and is closed after :data:`IDLE_TIMEOUT` unused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from urllib.parse import urlsplit

from .answer import UpstreamError
from .connection import Connection

CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection to an agent (answers themselves have no time limit: streams)."""
IDLE_TIMEOUT = 30.0
"""Seconds a kept connection may stay unused before it is closed."""
MAX_IDLE = 32
"""Kept connections per agent at most; more are closed when released."""


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
            if conn.is_open:
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
                await conn.start(method, head, body, chunked)
                return conn
            except UpstreamError:
                if not conn.may_retry(method, body is not None):
                    raise
        conn = await self._connect(key)
        try:
            await conn.start(method, head, body, chunked)
        except UpstreamError:
            if not conn.may_retry(method, body is not None):
                raise
            # A new connection closed without a byte of answer to an idempotent request: agentapi
            # does that when its handler panics (its GET /messages races with a conversation that
            # grows meanwhile). Once more, on another new connection; a second close is the answer.
            conn = await self._connect(key)
            await conn.start(method, head, body, chunked)
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

    def keep(self, conn: Connection) -> None:
        """Take back ``conn``, free for another request (closed when the pool is full or closed)."""
        idle = self._idle.setdefault(conn.key, [])
        if self.closed or len(idle) >= MAX_IDLE:
            conn.close()
            return
        idle.append(conn)
        conn.idle_for(IDLE_TIMEOUT)

    def forget(self, conn: Connection) -> None:
        """``conn`` is closed: it is no longer open, nor kept."""
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
