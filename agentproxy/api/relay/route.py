"""The aiohttp route of the relay: ``/sessions/{s}/agents/{a}/api/{path}`` through aiohttp's layers.

Every proxied request the fast path (:mod:`.fastpath`) does not take comes here: the agent's
state is looked up (and a suspended agent woken), the request head is built by the shared rules
(:mod:`.rules`), the body streams upstream as it arrives, and the answer comes back through
the pool (:mod:`.pool`): a short answer in one piece, a body of known length piece by piece, a
stream as it comes (:mod:`.stream`). Bodies are never held whole.

The hot path does only what a request needs: the agent is a dictionary read of the backend (ids
are checked only when it is not found, to tell 400 from 404), the request head is built in one
pass over the raw header bytes, and body chunks are passed on as they are, never copied or joined.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from aiohttp import StreamReader, web
from multidict import CIMultiDict

from ...backends.base import AgentState, AgentStatus, NotFound
from .. import params
from ..aiohttp_internals import CoalescedResponse
from ..auth import principal_of
from ..context import ApiContext
from .answer import UpstreamError
from .connection import Connection
from .pool import UpstreamPool
from .rules import kept_response_headers, origin_form, unreachable, upstream_head, upstream_target
from .stream import relaying, stream_body

ROUTE = "/sessions/{session}/agents/{agent}/api/{path:.*}"


def make_client() -> UpstreamPool:
    """The pool of connections of all upstream requests (open it inside the running loop)."""
    return UpstreamPool()


def request_head(request: web.Request, target: str, chunked: bool = False) -> bytes:
    """The request head sent upstream for an aiohttp request (see :func:`.rules.upstream_head`)."""
    return upstream_head(
        request.method, target, request.raw_headers, remote=request.remote, scheme=request.scheme,
        host=request.host, length=None if chunked else request.content_length, chunked=chunked)


def response_headers(raw: list[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """The upstream's headers less the hop-by-hop ones, as a mapping."""
    return CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in kept_response_headers(raw))


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
        if state.question is not None and request.method == "POST" and \
                upstream_target(raw_path, depth).split("?", 1)[0].rstrip("/") == "/message":
            self.ctx.backend.answered(state.id)  # the answer to its question: waiting_input ends now
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

    async def _relay(self, request: web.Request, conn: Connection, extra_headers: Mapping[str, str] | None = None
                     ) -> web.StreamResponse:
        """Stream the upstream answer to the client; close the upstream if either side fails."""
        answer, body = conn.answer, conn.body
        headers = response_headers(answer.headers)
        if extra_headers:
            headers.update(extra_headers)
        sized = "Content-Length" in headers
        whole = body.whole() if sized else None
        if whole is not None:  # the whole answer is here already (most are): hand it over in one piece
            done = web.Response(status=answer.status, reason=answer.reason or None, headers=headers, body=whole)
            conn.release()
            self.ctx.metrics.proxy_bytes_out.inc(len(whole))
            return done
        cls = CoalescedResponse if sized else web.StreamResponse
        response = cls(status=answer.status, reason=answer.reason or None, headers=headers)
        sent = 0
        try:
            with relaying(conn, lambda: request.transport):
                await response.prepare(request)
                if cls is CoalescedResponse or request.transport is None:
                    read = body.read
                    write = response.write
                    while chunk := await read():
                        sent += len(chunk)
                        await write(chunk)
                else:
                    framed = response.headers.get("Transfer-Encoding") == "chunked"  # set by prepare for HTTP/1.1
                    await stream_body(request.transport, framed, conn, self.ctx.metrics.proxy_bytes_out)
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
