"""APIs of other projects that agentproxy also serves, so that their clients work unchanged.

The one there is: the session API of the Go agentapi-proxy (v1.73.0), on when
``compat.agentapi_proxy.enabled`` is true. :func:`install` adds its routes to an
application after agentproxy's own, which keep priority.

Modules: :mod:`.routes` (its routes over agentproxy's backend and reverse proxy),
:mod:`.peer_model` (its session model over agentproxy's agents, pure), :mod:`.cors` (its
cross-origin answers, pure), :mod:`.openapi` (its routes in ``/openapi.json``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...settings import Settings
from ..context import ApiContext
from ..expect import deferring
from .peer_model import reserved_names
from .routes import PeerRoutes

__all__ = ["install", "openapi_paths"]


def install(app: web.Application, ctx: ApiContext) -> PeerRoutes | None:
    """Serve the agentapi-proxy routes on ``app`` when the settings turn them on.

    Call it once agentproxy's own routes are registered: their first path segments
    become the names no session (agent) may take while the layer is on.
    """
    if not ctx.settings.compat.agentapi_proxy.enabled:
        return None
    reserved = reserved_names(resource.canonical for resource in app.router.resources())
    layer = PeerRoutes(ctx, reserved)
    app.add_routes(deferring(layer.routes()))
    ctx.auth.open_requests.append(layer.is_open)
    ctx.agent_id_checks.append(layer.check_agent_id)
    # The peer has no sessions of agents: every owner's agents live in this one, each seen by its owner.
    ctx.shared_sessions.add(layer.session)
    return layer


def openapi_paths(settings: Settings) -> dict[str, Any]:
    """The OpenAPI paths of the agentapi-proxy routes (none while they are off)."""
    if not settings.compat.agentapi_proxy.enabled:
        return {}
    from .openapi import peer_paths

    return peer_paths()
