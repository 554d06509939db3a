"""The agentapi-proxy session API, served over agentproxy's backend and reverse proxy.

Routes (each answered as the Go agentapi-proxy v1.73.0 answers it, except where
the compatibility table in docs/compat.md says otherwise):

- ``GET /health``: ``{"status": "ok"}``, without a key;
- ``POST /start``: creates an agent in the configured session, answers ``{"session_id"}``
  at once while the agent starts;
- ``GET /search``: the caller's sessions, newest first, filtered by ``status`` and
  ``tag.KEY=VALUE``;
- ``DELETE /sessions/{id}``: stops the agent and deletes its data;
- ``ANY /{id}/...``: the agent's own API through agentproxy's reverse proxy;
- ``OPTIONS`` of each: CORS preflights, without a key, answered by agentproxy itself (a
  preflight of ``/{id}/...`` never reaches the agent).

Errors are the peer's ``{"message": ...}`` with agentproxy's ``error`` object beside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from typing import Any

from aiohttp import web

from ...backends.base import AgentState, BackendError, NotFound
from ...naming import is_valid_agent_id
from ...spec import SpecError, build_spec
from .. import params
from ..auth import principal_of
from ..context import ApiContext
from ..errors import ApiError, Handler, backend_error, error_body, spec_error
from ..relay.route import AgentProxy
from . import cors
from .peer_model import SearchFilter, new_session_id, parse_start, proxy_route, search

log = logging.getLogger("agentproxy.api")

SETTING = "compat.agentapi_proxy.enabled"

_OWN_PATHS = ("/health", "/start", "/search", "/sessions/{session_id}")
"""The peer's own routes (CORS by allowed origin); everything else is the session proxy."""


class PeerRoutes:
    """The agentapi-proxy routes of one application."""

    def __init__(self, ctx: ApiContext, reserved: frozenset[str]) -> None:
        options = ctx.settings.compat.agentapi_proxy
        self.ctx = ctx
        self.session = options.session
        self.agent_type = options.agent_type
        self.reserved = reserved
        """Agent ids that name a route: refused for new agents, never taken for a session."""
        self.origins = cors.parse_origins(options.allowed_origins)
        self.proxy = AgentProxy(ctx)

    def routes(self) -> list[web.RouteDef]:
        """The route table; register it after agentproxy's own routes, which keep priority."""
        own = self._own
        return [
            web.get("/health", own(self.health), allow_head=False),
            web.post("/start", own(self.start)),
            web.get("/search", own(self.search), allow_head=False),
            web.delete("/sessions/{session_id}", own(self.delete)),
            *(web.options(path, self.preflight) for path in _OWN_PATHS),
            web.route("*", proxy_route(self.reserved), self.forward),
        ]

    def is_open(self, request: web.Request) -> bool:
        """True for the requests the peer answers without a key: ``/health`` and CORS preflights."""
        if request.path == "/health":
            return True
        if request.method != "OPTIONS":
            return False
        segments = request.path.strip("/").split("/")
        first = segments[0]
        return first in ("start", "search", "health") or (first == "sessions" and len(segments) == 2) \
            or (first not in self.reserved and len(segments) >= 2)

    def check_agent_id(self, agent_id: str) -> None:
        """Refuse an agent id that names a route (its session's proxy path would be a route's)."""
        if agent_id in self.reserved:
            raise SpecError("id", f"must not be one of {', '.join(sorted(self.reserved))} while {SETTING} "
                                  "is true: those name routes, and the agentapi-proxy routes serve each "
                                  "session under /{id}/", kind="invalid")

    # --- the peer's own routes -----------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """``GET /health``."""
        return web.json_response({"status": "ok"})

    async def start(self, request: web.Request) -> web.Response:
        """``POST /start``: a new agent of the configured type; 200 ``{"session_id"}`` while it starts."""
        principal = principal_of(request)
        wanted = parse_start(await params.json_object(request, self.ctx.settings.server.max_body))
        spec = build_spec(self.ctx.settings, self.session, new_session_id(), self.agent_type, wanted.environment,
                          wanted.message, owner=principal.name)
        spec = dataclasses.replace(spec, tags=wanted.tags)
        async with self.ctx.quotas.admit(principal, spec, new_agent=True, starts=True):  # the caller's quotas
            # A client that goes away must not leave a half-made agent behind.
            state = await asyncio.shield(self.ctx.backend.create(spec, any_session=True))  # a shared session
        return web.json_response({"session_id": state.id})

    async def search(self, request: web.Request) -> web.Response:
        """``GET /search[?status=S][&tag.KEY=VALUE...]``: the caller's sessions, newest first."""
        principal = principal_of(request)
        states = await self.ctx.backend.list(session=self.session)
        visible = [s for s in states if principal.can_see(s)]
        return web.json_response({"sessions": search(visible, SearchFilter.from_query(request.query))})

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE /sessions/{id}``: stop the agent and delete its data (the peer deletes the session's directory)."""
        state = await self._session(request)
        if not principal_of(request).can_manage(state):  # members of a group it is shared with only use it
            raise ApiError(403, "You can only delete your own sessions")
        await asyncio.shield(self.ctx.backend.delete(state.session, state.id, purge=True))
        return web.json_response({"message": "Session terminated successfully", "session_id": state.id,
                                  "status": "terminated"})

    async def preflight(self, request: web.Request) -> web.Response:
        """``OPTIONS`` of the peer's own routes: 204, with CORS headers for an allowed origin."""
        return web.Response(status=204, headers=cors.preflight_headers(request.headers.get("Origin"), self.origins))

    # --- the session proxy ---------------------------------------------------------------------

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """``ANY /{id}/PATH?QUERY`` to ``/PATH?QUERY`` of the agent's API; a CORS preflight
        (``OPTIONS``) is answered here: 204 with :data:`.cors.PROXY_HEADERS`, as the peer answers it."""
        if request.method == "OPTIONS":
            # Preflights need no key, so nothing of one may reach an agent: whatever it carries
            # would be an unauthenticated request to someone's agent. Answered for any id alike,
            # it tells nothing about which sessions exist.
            return web.Response(status=204, headers=cors.PROXY_HEADERS)
        try:
            state = await self._session(request)
            if not principal_of(request).can_see(state):
                raise ApiError(403, "You can only access your own sessions")
            return await self.proxy.forward(request, state, request.raw_path, depth=2,
                                            extra_headers=cors.PROXY_HEADERS)
        except Exception as exc:  # noqa: BLE001 - every error of this route is answered in the peer's shape
            return _peer_error(request, exc)

    async def _session(self, request: web.Request) -> AgentState:
        session_id = request.match_info["session_id"]
        try:
            if is_valid_agent_id(session_id):
                return await self.ctx.backend.get(self.session, session_id)
        except NotFound:
            pass
        raise ApiError(404, "Session not found")

    def _own(self, handler: Handler) -> Handler:
        """``handler`` with CORS headers for allowed origins and errors in the peer's shape."""
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                response = await handler(request)
            except Exception as exc:  # noqa: BLE001 - see _peer_error
                response = _peer_error(request, exc)
            response.headers.update(cors.answer_headers(request.headers.get("Origin"), self.origins))
            return response
        return wrapped


def _peer_error(request: web.Request, exc: Exception) -> web.Response:
    """``{"message": ..., "error": {...}}`` for an exception; re-raises what is not an answerable error."""
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, BackendError):
        if exc.http_status >= 500:
            log.warning("%s %s: backend error: %s", request.method, request.path, exc.message)
        error = backend_error(_renamed(exc))
    elif isinstance(exc, SpecError):
        error = spec_error(_renamed(exc))
    else:
        raise exc
    body: dict[str, Any] = {"message": error.message, **error_body(error.code, error.message, error.field)}
    return web.json_response(body, status=error.status, headers=error.headers)


def _renamed(exc: Any) -> Any:
    """The error with ``env`` named ``environment``, as the request called it."""
    field = exc.field
    if not field or not (field == "env" or field.startswith("env.")):
        return exc
    renamed = "environment" + field[3:]
    if isinstance(exc, SpecError):
        return SpecError(renamed, exc.rule, kind=exc.kind)
    message = exc.message.replace(field, renamed, 1)
    return type(exc)(message, field=renamed)
