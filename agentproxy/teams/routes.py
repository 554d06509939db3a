"""The team routes: ``GET /profiles`` (what the caller may create agents with)."""

from __future__ import annotations

from aiohttp import web

from ..api.auth import principal_of
from ..api.context import ApiContext
from .profiles import allowed_profiles


class TeamRoutes:
    """Profiles, credentials and usage of the caller."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/profiles", self.profiles, allow_head=False)]

    async def profiles(self, request: web.Request) -> web.Response:
        """``GET /profiles``: the profiles the caller may use (no environment values, no
        instruction text), and the default one."""
        principal = principal_of(request)
        teams = self.ctx.teams
        allowed = allowed_profiles(teams, principal.groups, principal.admin)
        default = teams.default_profile if any(p.name == teams.default_profile for p in allowed) else None
        return web.json_response({"profiles": [p.summary() for p in allowed], "default": default})
