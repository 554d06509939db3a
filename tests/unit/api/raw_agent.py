"""Upstreams on raw sockets for the proxy's framing tests: what an agent received byte for byte,
and answers a real agentapi never gives (two answers at once, trailers, a huge head, a body
read to the connection's end, control bytes in a reason phrase).

These stand in for agentapi only where it cannot be made to misbehave or to report what it
parsed; the proxy's ordinary traffic is tested against the real agentapi elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """An asyncio server on 127.0.0.1 whose :meth:`close` also ends the connections it has, as an
    agent that goes away does. Closing the listener alone is not enough: since Python 3.12,
    ``Server.wait_closed()`` waits until every connection has ended, and the proxy under test keeps
    its idle connection to the agent in its pool for 30 s (``relay.pool.IDLE_TIMEOUT``), so each
    test waited that long on its way out."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        """Listen on a port of the kernel's choosing; the base URL."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self.server is None:
            return
        self.server.close()
        for writer in list(self._writers):
            writer.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._handler(reader, writer)
        finally:
            self._writers.discard(writer)

OK_BODY = b'{"ok":true}'
OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(OK_BODY), OK_BODY)


@dataclass
class Seen:
    """One request as the agent's parser framed it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


@dataclass
class _Parsing:
    """The state of llhttp's callbacks on one connection."""

    agent: RecordingAgent
    writer: asyncio.StreamWriter
    current: Seen | None = None
    url: bytes = b""
    parser: httptools.HttpRequestParser | None = None

    def on_message_begin(self) -> None:
        self.url = b""
        self.current = Seen("", "", [])

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.current is not None and self.parser is not None
        self.current.method = self.parser.get_method().decode("latin-1")
        self.current.target = self.url.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.body += body

    def on_message_complete(self) -> None:
        assert self.current is not None
        self.agent.requests.append(self.current)
        self.writer.write(self.agent.answer)


@dataclass
class RecordingAgent:
    """An upstream that frames what it receives as a strict HTTP/1.1 server does (llhttp) and answers
    every request it finds with :data:`OK_ANSWER`: the requests it saw, and what it could not parse."""

    answer: bytes = OK_ANSWER
    requests: list[Seen] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    connections: int = 0
    server: RawServer | None = None

    async def start(self) -> str:
        self.server = RawServer(self._serve)
        return await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        state = _Parsing(self, writer)
        state.parser = httptools.HttpRequestParser(state)
        try:
            while data := await reader.read(65536):
                try:
                    state.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    self.errors.append("upgrade")
                    break
                except httptools.HttpParserError as exc:
                    self.errors.append(str(exc))
                    break
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


class ScriptedAnswer:
    """An upstream that answers each request head it reads with ``answer`` in one write, then closes
    the connection when ``close`` (an answer read to its end) or waits for the next request."""

    def __init__(self, answer: bytes, close: bool = False, drop: int = 0) -> None:
        self.answer = answer
        self.close = close
        self.drop = drop
        """Requests on the first ``drop`` connections get no answer: the connection is closed
        (what agentapi's HTTP server does when a handler panics)."""
        self.connections = 0
        self.server = RawServer(self._serve)

    async def __aenter__(self) -> str:
        return await self.server.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        dropped = self.connections <= self.drop
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                if dropped:
                    break
                writer.write(self.answer)
                await writer.drain()
                if self.close:
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
