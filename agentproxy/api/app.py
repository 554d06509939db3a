"""Build the aiohttp application of the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from aiohttp import web

from ..backends.base import Backend
from ..idle import IdlePolicy
from ..settings import Settings
from ..teams.audit import AuditLog
from ..teams.config import teams_of
from ..teams.oidc import oidc_config
from ..teams.routes import TeamRoutes
from ..teams.signin import SignInRoutes, openapi_paths as signin_openapi_paths
from ..teams.tokens import TokenVerifier
from ..triggers.config import triggers_of
from ..triggers.service import install as install_triggers
from . import compat, ui
from .agents import AgentRoutes
from .auth import PRINCIPAL, ApiKey, Authenticator
from .context import ApiContext
from .culling import TrafficClock, culling_context
from .errors import error_middleware
from .events import EventStreams
from .expect import continue_middleware, deferring
from .health import Health
from .hooks import HookRoutes
from .metrics import Metrics
from .openapi import openapi_handler
from .progress import ProgressStreams
from .relay.route import AgentProxy, make_client

CONTEXT = web.AppKey("agentproxy.api.context", ApiContext)
"""Where the app keeps its :class:`ApiContext`."""


def create_app(
    settings: Settings,
    backend: Backend,
    api_keys: Iterable[ApiKey | Mapping[str, Any]] = (),
    *,
    heartbeat_interval: float = 15.0,
) -> web.Application:
    """The HTTP API over ``backend``.

    The app does not start or close the backend (whoever made it does). It opens
    its pooled upstream client on startup and closes it on cleanup. Run it with
    ``handler_cancellation=True`` (as ``agentproxy serve`` and aiohttp's test
    server do) so that a client leaving a proxied stream closes the upstream
    connection at once rather than at the next chunk.
    """
    teams = teams_of(settings)
    oidc = oidc_config(settings)
    tokens = TokenVerifier(oidc) if oidc is not None else None
    auth = Authenticator(api_keys, teams, tokens)
    policy = IdlePolicy(settings.agents.idle_timeout, settings.agents.max_age)
    profile_policies = {name: IdlePolicy(p.idle_timeout, settings.agents.max_age)
                        for name, p in teams.profiles.items() if p.idle_timeout}
    ctx = ApiContext(settings=settings, backend=backend, auth=auth, metrics=Metrics(backend), teams=teams,
                     heartbeat_interval=heartbeat_interval,
                     traffic=TrafficClock(enabled=bool(policy.idle_timeout or profile_policies)))
    audit = AuditLog(teams.audit_log) if teams.audit_log else None
    audit_middlewares = [audit.middleware(PRINCIPAL)] if audit is not None else []
    app = web.Application(
        # Innermost, after the key is checked: the 100 Continue of a request that expects one.
        middlewares=[ctx.metrics.middleware(), *audit_middlewares, error_middleware, auth.middleware(),
                     continue_middleware],
        client_max_size=settings.server.max_body,  # bodies read whole; the proxy streams and is not bound by it
    )
    app[CONTEXT] = ctx
    events = EventStreams(ctx)
    progress = ProgressStreams(ctx)
    # The proxy route first: routes are tried in registration order among those of the same
    # prefix (/sessions), and no other route can match a path under .../api/.
    add = lambda defs: app.add_routes(deferring(defs))  # noqa: E731 - every route: 100 Continue after auth
    add(AgentProxy(ctx).routes())
    add(AgentRoutes(ctx).routes())
    add(TeamRoutes(ctx).routes())
    signin_paths = {}
    if oidc is not None and tokens is not None:
        signin_paths = signin_openapi_paths()
        signin = SignInRoutes(oidc, tokens, auth)
        add(signin.routes())
        auth.open_requests.append(signin.is_open)

        async def close_tokens(app: web.Application) -> None:
            await tokens.close()
        app.on_cleanup.append(close_tokens)
    add(events.routes())
    add(progress.routes())
    add(HookRoutes(ctx).routes())
    add(Health(backend).routes())
    add(ui.routes())
    # Always: hooks may be defined through the API when the settings define none.
    install_triggers(app, ctx, triggers_of(settings), add)
    add([
        web.get("/metrics", ctx.metrics.handle, allow_head=False),
        web.get("/openapi.json", openapi_handler(
            auth.enabled, {**compat.openapi_paths(settings), **signin_paths},
            settings=settings, backend=backend), allow_head=False),
    ])
    compat.install(app, ctx)  # last: agentproxy's own routes keep priority

    async def upstream_client(app: web.Application) -> AsyncIterator[None]:
        ctx.client = make_client()
        try:
            yield
        finally:
            await ctx.client.close()
            ctx.client = None

    app.cleanup_ctx.append(upstream_client)
    app.cleanup_ctx.append(culling_context(backend, policy, ctx.traffic, ctx.metrics, profile_policies))
    app.on_shutdown.append(events.close_all)
    app.on_shutdown.append(progress.close_all)
    if audit is not None:
        async def close_audit(app: web.Application) -> None:
            audit.close()
        app.on_cleanup.append(close_audit)
    return app
