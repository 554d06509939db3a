"""Routes that create, list, inspect, delete, suspend and resume agents and read their logs."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from ..backends.base import AgentState, Conflict, NotFound
from ..backends.index import ANY_OWNER
from ..backends.ownership import check_session
from ..backends.suspension import API
from ..teams.http import check_manage, check_share, team_spec
from . import params
from .auth import Principal, principal_of
from .context import ApiContext
from .errors import ApiError
from .model import agent_json

CREATE_FIELDS = {"id": str, "agent": str, "env": dict, "resources": dict, "message": str, "profile": str,
                 "share": str}
"""Fields of a create request and the JSON type each must have (``null`` means "not given")."""

_JSON_TYPE = {str: "a string", dict: "an object"}


MAX_TAIL = 10_000


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _json_bytes(body: bytes) -> web.Response:
    """A 200 of JSON already serialised (the headers of :func:`_json`)."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")


LARGE_BODY = 1 << 20
"""Bytes from which a list is written part after part rather than as one body."""


async def _send_json_parts(request: web.Request, parts: list[bytes]) -> web.StreamResponse:
    """A 200 of JSON already serialised, in parts whose join is the body. A large one (a list of
    thousands) is written part after part after the headers: its whole body is never made, nor
    joined to the headers by aiohttp (where the running Python's ``writelines`` cannot be trusted,
    before 3.12.9), since a buffer of megabytes is a mapping of its own whose pages are faulted
    in anew on every list (see agentproxy.heap)."""
    size = sum(map(len, parts))
    if size < LARGE_BODY:
        return _json_bytes(b"".join(parts))
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    response.content_length = size
    await response.prepare(request)
    try:
        for part in parts:
            await response.write(part)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away mid-list: nothing to answer, nothing to log
    return response


class AgentRoutes:
    """The agent routes of one application."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [
            web.post("/sessions/{session}/agents", self.create),
            web.get("/sessions/{session}/agents", self.list_session, allow_head=False),
            web.get("/agents", self.list_all, allow_head=False),
            web.get("/sessions/{session}/agents/{agent}", self.get, allow_head=False),
            web.delete("/sessions/{session}/agents/{agent}", self.delete),
            web.post("/sessions/{session}/agents/{agent}/suspend", self.suspend),
            web.post("/sessions/{session}/agents/{agent}/resume", self.resume),
            web.put("/sessions/{session}/agents/{agent}/share", self.share),
            web.get("/sessions/{session}/agents/{agent}/logs", self.logs, allow_head=False),
        ]

    async def create(self, request: web.Request) -> web.Response:
        """``POST /sessions/{session}/agents``: 201 for a new agent, 200 when an equal one exists."""
        session = params.path_session(request)
        principal = principal_of(request)
        body = await params.json_object(request, self.ctx.settings.server.max_body)
        fields = _create_fields(body)
        spec = team_spec(self.ctx.teams, self.ctx.settings, principal, session, fields)
        for check in self.ctx.agent_id_checks:
            check(spec.id)
        existed = resumes = False
        if fields.get("id") is not None:
            try:
                current = await self.ctx.backend.get(session, spec.id)
            except NotFound:
                pass
            else:
                if not principal.can_see(current):
                    if not self.ctx.may_join(principal, session):
                        # A session of another owner is refused as such, whatever agent ids it holds.
                        check_session(spec, await self.ctx.backend.list(session=session), ())
                    raise Conflict(f"agent id {spec.id!r} is taken; choose another", field="id")
                existed, resumes = True, current.suspended
        async with self.ctx.quotas.admit(principal, spec, new_agent=not existed, starts=not existed or resumes):
            # A client that goes away must not leave a half-made agent behind.
            state = await asyncio.shield(self.ctx.backend.create(
                spec, any_session=self.ctx.may_join(principal, session), names_id=fields.get("id") is not None))
        return _json(agent_json(state), status=200 if existed else 201)

    async def list_session(self, request: web.Request) -> web.StreamResponse:
        """``GET /sessions/{session}/agents``."""
        return await self._list(request, params.path_session(request))

    async def list_all(self, request: web.Request) -> web.StreamResponse:
        """``GET /agents``, optionally filtered by ``session`` and ``status``."""
        return await self._list(request, params.query_session(request))

    async def _list(self, request: web.Request, session: str | None) -> web.StreamResponse:
        # Each agent's JSON is made once per change of the agent (see .listing).
        status = params.query_status(request)
        principal = principal_of(request)
        owner = ANY_OWNER if principal.admin or principal.groups else principal.name
        states = await self.ctx.backend.list(session=session, status=status, owner=owner)
        if owner is ANY_OWNER and not principal.admin:  # own agents and those shared with a group of the caller
            states = [s for s in states if principal.can_see(s)]
            owner = principal.name
        complete = session is None and status is None and owner is ANY_OWNER
        return await _send_json_parts(request, self.ctx.agent_texts.list_parts(states, complete=complete))

    async def get(self, request: web.Request) -> web.Response:
        """``GET /sessions/{session}/agents/{agent}``."""
        return _json_bytes(self.ctx.agent_texts.text(await self._visible(request)))

    async def delete(self, request: web.Request) -> web.Response:
        """``DELETE /sessions/{session}/agents/{agent}[?purge=true]``: the agent's last state."""
        purge = params.query_bool(request, "purge")
        state = await self._visible(request)
        check_manage(principal_of(request), state)
        final = await asyncio.shield(self.ctx.backend.delete(state.session, state.id, purge=purge))
        return _json(agent_json(final))

    async def share(self, request: web.Request) -> web.Response:
        """``PUT .../share`` with ``{"group": "ml"}`` (``null``: share with no group): who else
        sees and talks to the agent, changed while it runs. Its owner and admins only."""
        state = await self._visible(request)
        principal = principal_of(request)
        check_manage(principal, state)
        body = await params.json_object(request, self.ctx.settings.server.max_body)
        unknown = sorted(set(body) - {"group"})
        if unknown or "group" not in body:
            field = unknown[0] if unknown else "group"
            raise ApiError(400, f"{field}: a share has one field, group (a group name, or null for none)",
                           code="invalid", field=field)
        group = body["group"]
        if group is not None:
            if not isinstance(group, str):
                raise ApiError(400, "group: must be a group name or null", code="invalid", field="group")
            # An admin sharing another's agent: the owner's groups count as the owner's would.
            owner = Principal(state.spec.owner, principal.admin,
                              principal.groups | self.ctx.teams.groups_of(state.spec.owner)
                              if principal.admin else principal.groups)
            check_share(self.ctx.teams, owner, group, "group")
        return _json(agent_json(await asyncio.shield(self.ctx.backend.share(state.session, state.id, group))))

    async def suspend(self, request: web.Request) -> web.Response:
        """``POST .../suspend``: save and stop the agent, keeping its data (200 also when it
        was suspended already)."""
        state = await self._visible(request)
        return _json(agent_json(await asyncio.shield(self.ctx.backend.suspend(state.session, state.id, API))))

    async def resume(self, request: web.Request) -> web.Response:
        """``POST .../resume``: start a suspended agent again with its data (200 also when it
        was not suspended)."""
        state = await self._visible(request)
        async with self.ctx.quotas.admit_resume(state):  # its owner's quotas, whoever asks
            return _json(agent_json(await asyncio.shield(self.ctx.backend.resume(state.session, state.id, API))))

    async def logs(self, request: web.Request) -> web.Response:
        """``GET .../logs[?tail=N][&format=text|json]``: plain text unless JSON is asked for."""
        tail = params.query_int(request, "tail", 100, 1, MAX_TAIL)
        as_json = _wants_json(request)
        state = await self._visible(request)
        text = await self.ctx.backend.logs(state.session, state.id, tail_lines=tail)
        if as_json:
            return _json({"session": state.session, "id": state.id, "tail": tail, "lines": text.splitlines()})
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    async def _visible(self, request: web.Request) -> AgentState:
        session, agent = params.path_agent(request)
        return await self.ctx.visible_agent(principal_of(request), session, agent)


def _create_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The fields of a create request, checked for shape (values are checked by ``build_spec``)."""
    unknown = sorted(set(body) - set(CREATE_FIELDS))
    if unknown:
        raise ApiError(400, f"{unknown[0]}: unknown field; a create request may have "
                            f"{', '.join(CREATE_FIELDS)}", code="invalid", field=unknown[0])
    for name, kind in CREATE_FIELDS.items():
        value = body.get(name)
        if value is not None and (not isinstance(value, kind)):
            raise ApiError(400, f"{name}: must be {_JSON_TYPE[kind]}", code="invalid", field=name)
    return body


def _wants_json(request: web.Request) -> bool:
    fmt = request.query.get("format")
    if fmt is not None:
        if fmt not in ("text", "json"):
            raise ApiError(400, "format: must be text or json", code="invalid", field="format")
        return fmt == "json"
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/plain" not in accept
