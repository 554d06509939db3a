"""The reverse proxy to each agent's own API (``/sessions/{s}/agents/{a}/api/{path}``).

Bodies stream both ways and are never held whole; Server-Sent Events pass
chunk by chunk as they arrive. Hop-by-hop headers are dropped, ``Host`` becomes
``localhost`` (agentapi answers other hosts with 400) and ``X-Forwarded-*`` say
who asked. All upstream requests share one pool of kept-alive connections
(:mod:`.upstream`).

The hot path does only what a request needs: the agent is a dictionary read of the
backend (ids are checked only when it is not found, to tell 400 from 404), the
request head sent upstream is built in one pass over the raw header bytes, and
body chunks are passed on as they are, never copied or joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from aiohttp import StreamReader, web
from multidict import CIMultiDict
from yarl import URL

from ..backends.base import AgentState, AgentStatus, NotFound
from ..launch import AGENTAPI_HOST
from . import params
from .auth import principal_of
from .context import ApiContext
from .errors import ApiError
from .metrics import Tally
from .upstream import Connection, UpstreamError, UpstreamPool

log = logging.getLogger("agentproxy.api")

ROUTE = "/sessions/{session}/agents/{agent}/api/{path:.*}"

UPSTREAM_HOST = AGENTAPI_HOST
"""The Host header agentapi accepts."""

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
"""Headers that concern one connection only (RFC 9110 section 7.6.1); ``Proxy-*`` are dropped too."""

_DROPPED_REQUEST = HOP_BY_HOP | {
    "host", "expect",  # Host is replaced; an Expect was already answered by this server
    "content-length",  # the proxy frames the body itself (with Transfer-Encoding, hop-by-hop already)
    "authorization", "x-api-key",  # agentproxy's credentials are not the agent's business
    "x-forwarded-proto", "x-forwarded-host",  # set anew below
}
_DROPPED_RESPONSE = HOP_BY_HOP
_DROPPED_REQUEST_RAW = frozenset(name.encode() for name in _DROPPED_REQUEST)
_DROPPED_RESPONSE_RAW = frozenset(name.encode() for name in _DROPPED_RESPONSE)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
"""Methods whose request says ``Content-Length: 0`` when it has no body."""

STREAM_HIGH_WATER = 256 * 1024
"""Bytes waiting to go to a client beyond which reading the agent's stream pauses."""
STREAM_DRAIN_POLL = 0.005
"""Seconds between looks at a slow client's buffer while the stream is paused."""


class _CoalescedResponse(web.StreamResponse):
    """A response of known length: its headers go out with the first body bytes (one write, not two)."""

    _send_headers_immediately = False


def make_client() -> UpstreamPool:
    """The pool of connections of all upstream requests (open it inside the running loop)."""
    return UpstreamPool()


def _connection_tokens(value: str | None) -> set[str]:
    if not value:
        return set()
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def _raw_tokens(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The header names a ``Connection`` header lists (they are hop-by-hop too)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return frozenset(tokens)


def request_head(request: web.Request, target: str, chunked: bool = False) -> bytes:
    """The request head sent upstream for an aiohttp request (see :func:`upstream_head`)."""
    return upstream_head(
        request.method, target, request.raw_headers, remote=request.remote, scheme=request.scheme,
        host=request.host, length=None if chunked else request.content_length, chunked=chunked)


def upstream_head(method: str, target: str, raw_headers: Iterable[tuple[bytes, bytes]], *, remote: str | None,
                  scheme: str, host: str | None, length: int | None, chunked: bool = False) -> bytes:
    """The request head sent upstream, blank line included: the caller's end-to-end headers as
    they came, ``Host: localhost``, ``X-Forwarded-*`` and the body's framing (one pass over the
    raw headers).

    The framing is always the proxy's own, whatever the caller's headers say: ``Content-Length:
    length`` for a body of known length, ``Transfer-Encoding: chunked`` when ``chunked`` (the
    body came without a length and goes upstream in chunks), ``Content-Length: 0`` for a POST,
    PUT or PATCH without a body, else nothing. The caller's own framing headers are never passed
    on, so no ``Connection`` header can take them away while the body still follows (which the
    agent would read as the next request).
    """
    raw = raw_headers if isinstance(raw_headers, (list, tuple)) else list(raw_headers)
    named = _raw_tokens(raw)
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {UPSTREAM_HOST}\r\n".encode()]
    append = lines.append
    forwarded_for = None
    for name, value in raw:
        lower = name.lower()
        if lower in _DROPPED_REQUEST_RAW or lower.startswith(b"proxy-") or lower in named:
            continue
        if lower == b"x-forwarded-for":
            forwarded_for = value if forwarded_for is None else forwarded_for + b", " + value
            continue
        append(name + b": " + value + b"\r\n")
    caller = (remote or "unknown").encode()
    append(b"X-Forwarded-For: " + (caller if forwarded_for is None else forwarded_for + b", " + caller) + b"\r\n")
    append(b"X-Forwarded-Proto: " + scheme.encode() + b"\r\n")
    if host:
        append(b"X-Forwarded-Host: " + host.encode("latin-1") + b"\r\n")
    if chunked:
        append(b"Transfer-Encoding: chunked\r\n")
    elif length is not None:
        append(b"Content-Length: %d\r\n" % length)
    elif method in _BODY_METHODS:
        append(b"Content-Length: 0\r\n")
    append(b"\r\n")
    return b"".join(lines)


def request_headers(request: web.Request) -> CIMultiDict[str]:
    """The headers sent upstream, as a mapping (what :func:`request_head` writes)."""
    out: CIMultiDict[str] = CIMultiDict()
    for line in request_head(request, "/").split(b"\r\n")[1:]:
        if line:
            name, _, value = line.decode("latin-1").partition(": ")
            out.add(name, value)
    return out


def kept_response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's raw headers less the hop-by-hop ones, in their order."""
    named = None
    kept = []
    for name, value in raw:
        lower = name.lower()
        if lower in _DROPPED_RESPONSE_RAW or lower.startswith(b"proxy-"):
            if lower == b"connection":
                named = _raw_tokens(raw)
            continue
        kept.append((name, value))
    if named:
        kept = [(name, value) for name, value in kept if name.lower() not in named]
    return kept


def response_headers(raw: list[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """The upstream's headers less the hop-by-hop ones, as a mapping."""
    return CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in kept_response_headers(raw))


def upstream_target(raw_path: str, depth: int = 6) -> str:
    """The agent's own path and query of a proxied request, as sent (still encoded).

    It follows the ``depth``-th ``/`` of ``raw_path``: ``/sessions/S/agents/A/api/REST``
    holds no other ``/`` before REST, as ids hold none.
    """
    parts = raw_path.split("/", depth)
    return "/" + parts[depth] if len(parts) > depth else "/"


def origin_form(target: str) -> str:
    """The path and query of a request target: as it is in origin form (``/path?query``); from an
    absolute-form target (``http://host/path?query``, RFC 9112 section 3.2.2), whose authority
    names this server and is no part of the agent's path."""
    if target.startswith("/"):
        return target
    parts = urlsplit(target)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def upstream_url(base: str, raw_path: str, depth: int = 6) -> URL:
    """The upstream URL of a proxied request, its path and query passed on as sent (still encoded)."""
    return URL(f"{base.rstrip('/')}{upstream_target(raw_path, depth)}", encoded=True)


class AgentProxy:
    """Proxies requests to the agent's API through the shared pool of upstream connections."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """The route table: every method under ``.../api/``."""
        return [web.route("*", ROUTE, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward ``request`` to the agent and stream the answer back."""
        principal = principal_of(request)
        match = request.match_info
        session, agent = match["session"], match["agent"]
        try:
            state: AgentState | None = await self.ctx.backend.get(session, agent)
        except NotFound:
            state = None
        if state is None or not principal.can_see(state):
            params.path_agent(request)  # a malformed id is a 400, not a 404
            raise NotFound(f"agent {agent!r} not found in session {session!r}")
        return await self.forward(request, state, request.raw_path)

    async def forward(self, request: web.Request, state: AgentState, raw_path: str, depth: int = 6, *,
                      extra_headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Forward ``request`` to the API of the agent in ``state`` and stream the answer back.

        The agent's path follows the ``depth``-th ``/`` of ``raw_path``; ``extra_headers``
        are set on the answer (over the agent's own).
        """
        self.ctx.traffic.touch(state.id)  # idle culling's clock: a dict write
        raw_path = origin_form(raw_path)
        if state.status is not AgentStatus.READY or not state.upstream:
            # Never for a ready agent: a suspended one resumes; 503 with Retry-After unless ready in time.
            state = await self.ctx.waker.wake(state)  # type: ignore[union-attr]  # set by __post_init__
        pool = self.ctx.client
        assert pool is not None, "the app has not started"
        try:
            host, port, prefix = pool.address(state.upstream)  # type: ignore[arg-type]  # a ready agent has one
            body = None
            chunked = False
            if request.body_exists:
                chunked = "Content-Length" not in request.headers
                body = self._counted_body(request.content)
            head = request_head(request, prefix + upstream_target(raw_path, depth), chunked)
            answer = await pool.request((host, port), request.method, head, body, chunked)
        except UpstreamError as exc:
            raise unreachable(state.id, exc) from None
        return await self._relay(request, answer, extra_headers)

    async def _relay(self, request: web.Request, answer: Connection, extra_headers: Mapping[str, str] | None = None
                     ) -> web.StreamResponse:
        """Stream the upstream answer to the client; close the upstream if either side fails."""
        headers = response_headers(answer.headers)
        if extra_headers:
            headers.update(extra_headers)
        sized = "Content-Length" in headers
        body = answer.whole_body() if sized else None
        if body is not None:  # the whole answer is here already (most are): hand it over in one piece
            whole = web.Response(status=answer.status, reason=answer.reason or None, headers=headers, body=body)
            answer.release()
            self.ctx.metrics.proxy_bytes_out.inc(len(body))
            return whole
        cls = _CoalescedResponse if sized else web.StreamResponse
        response = cls(status=answer.status, reason=answer.reason or None, headers=headers)
        sent = 0
        try:
            with relaying(answer, lambda: request.transport):
                await response.prepare(request)
                if cls is _CoalescedResponse or request.transport is None:
                    read = answer.read
                    write = response.write
                    while chunk := await read():
                        sent += len(chunk)
                        await write(chunk)
                else:
                    framed = response.headers.get("Transfer-Encoding") == "chunked"  # set by prepare for HTTP/1.1
                    await stream_body(request.transport, framed, answer, self.ctx.metrics.proxy_bytes_out)
                await response.write_eof()
        finally:
            self.ctx.metrics.proxy_bytes_out.inc(sent)
        return response

    async def _counted_body(self, content: StreamReader) -> AsyncIterator[bytes]:
        """The request body as it arrives."""
        received = 0
        try:
            async for chunk in content.iter_any():
                received += len(chunk)
                yield chunk
        finally:
            self.ctx.metrics.proxy_bytes_in.inc(received)


def unreachable(agent_id: str, error: Exception) -> ApiError:
    """The error answered when the agent's API cannot be reached (502), on either path."""
    return ApiError(502, f"agent {agent_id!r} API is unreachable: {error}", code="bad_gateway")


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
    client leaves and :class:`.upstream.UpstreamError` when the agent breaks off.
    """

    def put(data: bytes, frame: bool) -> bool:
        """Write ``data`` (as one chunk when ``frame``); False when the client left (reading stops,
        the handler is cancelled)."""
        if transport.is_closing():
            answer.pause()
            return False
        if frame:
            transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            transport.write(data)
        if transport.get_write_buffer_size() > STREAM_HIGH_WATER:
            answer.pause()
        return True

    def sink(data: bytes) -> None:
        if put(data, framed):
            tally.value += len(data)

    def unparsed(data: bytes) -> None:
        put(data, False)

    pending = answer.divert(sink)
    passed = raw and framed and answer.pass_through(unparsed)
    for data in pending:
        sink(data)
    try:
        while True:
            await answer.wait()
            if answer.ended:
                if answer.spilled:
                    raise UpstreamError("the agent sent more than its answer")
                return passed
            if transport.is_closing():
                raise ConnectionResetError("the client left")
            while transport.get_write_buffer_size() > STREAM_HIGH_WATER // 4:  # a slow client
                await asyncio.sleep(STREAM_DRAIN_POLL)
                if transport.is_closing():
                    raise ConnectionResetError("the client left")
            answer.resume()
    finally:
        tally.value += answer.passed
