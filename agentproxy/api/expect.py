"""``Expect: 100-continue`` answered only once a request passed the middlewares (its key checked).

aiohttp answers ``100 Continue`` from the route's expect handler, before any middleware has
run: a caller without a key would be invited to send its body. Here the expect handler only
checks the expectation (417 for any other, as aiohttp does) and notes it; the innermost
middleware writes ``100 Continue`` when the request reaches it, after authentication.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.http import HttpVersion11

from .errors import Handler

_PENDING = web.RequestKey("agentproxy.continue_pending", bool) if hasattr(web, "RequestKey") else \
    "agentproxy.continue_pending"


async def expect_later(request: web.Request) -> None:
    """The expect handler of every route: refuse an expectation other than ``100-continue``;
    note that one is pending (:func:`continue_middleware` answers it)."""
    if request.version != HttpVersion11:
        return
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    request[_PENDING] = True


def deferring(defs: Iterable[web.AbstractRouteDef]) -> list[web.AbstractRouteDef]:
    """``defs`` with :func:`expect_later` as the expect handler of each route."""
    return [web.RouteDef(d.method, d.path, d.handler, {**d.kwargs, "expect_handler": expect_later})
            if isinstance(d, web.RouteDef) else d for d in defs]


@web.middleware
async def continue_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Write ``100 Continue`` for a request that expects it and got this far (the innermost middleware)."""
    if request.get(_PENDING):
        request[_PENDING] = False
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer's own bytes start after it (as in aiohttp's handler)
    return await handler(request)
