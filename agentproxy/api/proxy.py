"""The reverse proxy to each agent's own API (``/sessions/{s}/agents/{a}/api/{path}``).

Bodies stream both ways and are never held whole; Server-Sent Events pass
chunk by chunk as they arrive. Hop-by-hop headers are dropped, ``Host`` becomes
``localhost`` (agentapi answers other hosts with 400) and ``X-Forwarded-*`` say
who asked. All upstream requests share one pooled client.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ..backends.base import AgentState, AgentStatus
from ..launch import AGENTAPI_HOST
from . import params
from .auth import principal_of
from .context import ApiContext
from .errors import ApiError

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
    "authorization", "x-api-key",  # agentproxy's credentials are not the agent's business
    "x-forwarded-proto", "x-forwarded-host",  # set anew below
}
_DROPPED_RESPONSE = HOP_BY_HOP

SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
"""Headers the client library would add on its own; the proxy sends only what the caller sent."""


class _CoalescedResponse(web.StreamResponse):
    """A response of known length: its headers go out with the first body bytes (one write, not two)."""

    _send_headers_immediately = False


def make_client(connector_limit: int = 0) -> aiohttp.ClientSession:
    """The pooled client of all upstream requests: bytes pass unchanged, no cookies, no time limit
    on streams (only on connecting)."""
    connector = aiohttp.TCPConnector(limit=connector_limit, ttl_dns_cache=60, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=10, sock_read=None),
        skip_auto_headers=SKIP_AUTO_HEADERS,
        trust_env=False,
    )


def _connection_tokens(value: str | None) -> set[str]:
    if not value:
        return set()
    return {token.strip().lower() for token in value.split(",") if token.strip()}


def request_headers(request: web.Request) -> CIMultiDict[str]:
    """The headers sent upstream: end-to-end ones of the caller, ``Host: localhost`` and ``X-Forwarded-*``."""
    incoming = request.headers
    named = _connection_tokens(incoming.get("Connection"))
    out: CIMultiDict[str] = CIMultiDict()
    forwarded_for = None
    for name, value in incoming.items():
        lower = name.lower()
        if lower in _DROPPED_REQUEST or lower.startswith("proxy-") or lower in named:
            continue
        if lower == "x-forwarded-for":
            forwarded_for = value if forwarded_for is None else f"{forwarded_for}, {value}"
            continue
        out.add(name, value)
    out["Host"] = UPSTREAM_HOST
    remote = request.remote or "unknown"
    out["X-Forwarded-For"] = remote if forwarded_for is None else f"{forwarded_for}, {remote}"
    out["X-Forwarded-Proto"] = request.scheme
    if request.host:
        out["X-Forwarded-Host"] = request.host
    return out


def response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
    """The upstream's headers less the hop-by-hop ones."""
    incoming = upstream.headers
    named = _connection_tokens(incoming.get("Connection"))
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if lower in _DROPPED_RESPONSE or lower.startswith("proxy-") or lower in named:
            continue
        out.add(name, value)
    return out


def upstream_url(base: str, raw_path: str, depth: int = 6) -> URL:
    """The upstream URL of a proxied request, its path and query passed on as sent (still encoded).

    The agent's own path follows the ``depth``-th ``/`` of ``raw_path``.
    """
    # raw_path is /sessions/S/agents/A/api/REST: ids hold no '/', so REST follows the sixth '/'.
    rest = raw_path.split("/", depth)[depth] if raw_path.count("/") >= depth else ""
    return URL(f"{base.rstrip('/')}/{rest}", encoded=True)


class AgentProxy:
    """Proxies requests to the agent's API through the shared upstream client."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """The route table: every method under ``.../api/``."""
        return [web.route("*", ROUTE, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward ``request`` to the agent and stream the answer back."""
        session, agent = params.path_agent(request)
        state = await self.ctx.visible_agent(principal_of(request), session, agent)
        return await self.forward(request, state, request.raw_path)

    async def forward(self, request: web.Request, state: AgentState, raw_path: str, depth: int = 6, *,
                      extra_headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Forward ``request`` to the API of the agent in ``state`` and stream the answer back.

        The agent's path follows the ``depth``-th ``/`` of ``raw_path``; ``extra_headers``
        are set on the answer (over the agent's own).
        """
        agent = state.id
        self.ctx.traffic.touch(agent)  # idle culling's clock: a dict write
        if state.status is not AgentStatus.READY or not state.upstream:
            # Never for a ready agent: a suspended one resumes; 503 with Retry-After unless ready in time.
            state = await self.ctx.waker.wake(state)
        client = self.ctx.client
        assert client is not None, "the app has not started"
        url = upstream_url(state.upstream, raw_path, depth)
        body = self._counted_body(request.content) if request.body_exists else None
        try:
            upstream = await client.request(request.method, url, headers=request_headers(request), data=body,
                                            allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ApiError(502, f"agent {agent!r} API is unreachable: {exc or type(exc).__name__}",
                           code="bad_gateway") from None
        return await self._relay(request, upstream, extra_headers)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse,
                     extra_headers: Mapping[str, str] | None = None) -> web.StreamResponse:
        """Stream the upstream response to the client; close the upstream if either side fails."""
        headers = response_headers(upstream)
        if extra_headers:
            headers.update(extra_headers)
        cls = _CoalescedResponse if "Content-Length" in headers else web.StreamResponse
        response = cls(status=upstream.status, reason=upstream.reason, headers=headers)
        complete = False
        sent = 0
        try:
            await response.prepare(request)
            read = upstream.content.readany
            write = response.write
            while chunk := await read():
                sent += len(chunk)
                await write(chunk)
            await response.write_eof()
            complete = True
        except ConnectionResetError:
            pass  # the client went away
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            log.info("upstream %s broke off mid-response: %s", upstream.url, exc or type(exc).__name__)
        finally:
            self.ctx.metrics.proxy_bytes_out.inc(sent)
            if complete:
                upstream.release()
            else:
                # Either side failed: closing the upstream tells the agent the client left, and
                # cutting the client's connection is the only honest signal once headers are out.
                upstream.close()
                if request.transport is not None:
                    request.transport.close()
        return response

    async def _counted_body(self, content: web.StreamReader) -> AsyncIterator[bytes]:
        received = 0
        try:
            async for chunk in content.iter_any():
                received += len(chunk)
                yield chunk
        finally:
            self.ctx.metrics.proxy_bytes_in.inc(received)
