"""The team routes: ``GET /profiles`` (what the caller may create agents with) and the caller's
credentials (``PUT``/``DELETE /credentials/{name}``, ``GET /credentials``: names and update
times; no route ever answers a value)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ..api import params
from ..api.auth import Principal, principal_of
from ..api.context import ApiContext
from ..api.errors import ApiError
from ..spec import text_problem
from .config import credential_problem
from .credentials import MAX_VALUE, Holder, LocalCredentials, local_store
from .profiles import allowed_profiles


class TeamRoutes:
    """Profiles, credentials and usage of the caller."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/profiles", self.profiles, allow_head=False),
                web.get("/credentials", self.list_credentials, allow_head=False),
                web.put("/credentials/{name}", self.put_credential),
                web.delete("/credentials/{name}", self.delete_credential),
                web.get("/usage", self.usage, allow_head=False)]

    async def profiles(self, request: web.Request) -> web.Response:
        """``GET /profiles``: the profiles the caller may use (no environment values, no
        instruction text), and the default one."""
        principal = principal_of(request)
        teams = self.ctx.teams
        allowed = allowed_profiles(teams, principal.groups, principal.admin)
        default = teams.default_profile if any(p.name == teams.default_profile for p in allowed) else None
        return web.json_response({"profiles": [p.summary() for p in allowed], "default": default})

    async def usage(self, request: web.Request) -> web.Response:
        """``GET /usage``: the caller's agents, running agents and creates in flight against each
        quota of the caller (its own, then its groups')."""
        principal = principal_of(request)
        return web.json_response({"user": principal.name, "admin": principal.admin,
                                  "quotas": await self.ctx.quotas.usage(principal)})

    def _holder(self, request: web.Request) -> Holder:
        """The caller's own credentials, or with ``?group=G`` those of a group of the caller's."""
        principal: Principal = principal_of(request)
        group = request.query.get("group")
        if group is not None:
            if group not in principal.groups and not (principal.admin and group in self.ctx.teams.members):
                raise ApiError(403, f"group: {group!r} is not one of your groups", field="group")
            return Holder("group", group)
        if principal.name is None:
            raise ApiError(403, "credentials belong to a user: configure server.api_keys (each key acts for a "
                                "user)", field="Authorization")
        return Holder("user", principal.name)

    def _store(self) -> Any:
        """Where the credentials are: the backend's (k8s mode: Secrets), else the local files."""
        store = getattr(self.ctx.backend, "credential_store", None)
        return store() if callable(store) else LocalCredentials(local_store(self.ctx.settings))

    @staticmethod
    def _name(request: web.Request) -> str:
        name = request.match_info["name"]
        if credential_problem(name):
            raise ApiError(400, f"name: {credential_problem(name)}", code="invalid", field="name")
        return name

    async def list_credentials(self, request: web.Request) -> web.Response:
        """``GET /credentials[?group=G]``: names and update times, never a value."""
        holder = self._holder(request)
        names = await self._store().names(holder)
        return web.json_response({"owner": {"kind": holder.kind, "name": holder.name}, "credentials": [
            {"name": name, "updated_at": _iso(at)} for name, at in sorted(names.items())]})

    async def put_credential(self, request: web.Request) -> web.Response:
        """``PUT /credentials/{name}[?group=G]`` with ``{"value": "..."}``: set it; the answer
        has its name and update time (not the value). Agents get it at their next start."""
        holder = self._holder(request)
        name = self._name(request)
        body = await params.json_object(request, self.ctx.settings.server.max_body)
        unknown = sorted(set(body) - {"value"})
        if unknown:
            raise ApiError(400, f"{unknown[0]}: unknown field; a credential has only value", code="invalid",
                           field=unknown[0])
        value = body.get("value")
        if not isinstance(value, str) or not value or len(value) > MAX_VALUE:
            raise ApiError(422, f"value: must be a non-empty string of at most {MAX_VALUE} characters",
                           code="unprocessable", field="value")
        problem = text_problem(value)
        if problem is not None:
            # Which character, not the value: the message must not echo any of it.
            raise ApiError(422, "value: must be UTF-8 text without NUL characters", code="unprocessable",
                           field="value")
        at = await self._store().put(holder, name, value)
        return web.json_response(_entry(holder, name, at))

    async def delete_credential(self, request: web.Request) -> web.Response:
        """``DELETE /credentials/{name}[?group=G]``: 404 when there is none."""
        holder = self._holder(request)
        name = self._name(request)
        if not await self._store().delete(holder, name):
            raise ApiError(404, f"no credential {name!r}", field="name")
        return web.json_response({"owner": {"kind": holder.kind, "name": holder.name}, "name": name,
                                  "deleted": True})


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _entry(holder: Holder, name: str, at: float) -> dict[str, Any]:
    return {"owner": {"kind": holder.kind, "name": holder.name}, "name": name, "updated_at": _iso(at)}
