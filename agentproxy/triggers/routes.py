"""What the triggers show: ``GET /hooks``, ``GET /schedules``, ``GET /triggers/deliveries`` and
``GET /triggers/dead-letters``; and hooks defined at run time: ``PUT``, ``GET`` and ``DELETE
/hooks/{id}`` (admins only, as the listings). No answer holds a secret, a secret's value or a
payload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api import params
from ..api.auth import principal_of
from ..api.errors import ApiError
from .claims import Entry
from .config import Hook
from .defined import DefinitionError, id_problem
from .hookbook import SettingsHook
from .schedules import next_tick

if TYPE_CHECKING:
    from .service import TriggerService


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


class TriggerRoutes:
    """The listing routes of the triggers."""

    def __init__(self, service: TriggerService) -> None:
        self.service = service

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/hooks", self.hooks, allow_head=False),
                web.get("/schedules", self.schedules, allow_head=False),
                web.get("/triggers/deliveries", self.deliveries, allow_head=False),
                web.get("/triggers/dead-letters", self.dead_letters, allow_head=False),
                web.put("/hooks/{hook}", self.put_hook),
                web.get("/hooks/{hook}", self.get_hook, allow_head=False),
                web.delete("/hooks/{hook}", self.delete_hook)]

    @staticmethod
    def _admin(request: web.Request) -> None:
        if not principal_of(request).admin:
            raise ApiError(403, "only admins see the triggers and their deliveries", field="Authorization")

    def _summary(self, hook: Hook) -> dict[str, Any]:
        return {**hook.summary(), "source": self.service.book.source(hook.id)}

    async def hooks(self, request: web.Request) -> web.Response:
        """``GET /hooks``: every hook, where its secret is (never the secret), and where it is
        defined (``settings`` or ``api``)."""
        self._admin(request)
        return web.json_response({"hooks": [self._summary(h) for h in await self.service.book.all()]})

    @staticmethod
    def _hook_id(request: web.Request) -> str:
        hook_id = request.match_info["hook"]
        problem = id_problem(hook_id)
        if problem:
            raise ApiError(400, f"hook: {problem}", code="invalid", field="hook")
        return hook_id

    async def put_hook(self, request: web.Request) -> web.Response:
        """``PUT /hooks/{id}``: define (201) or replace (200) a hook; a bad definition is 400
        naming the field and changes nothing."""
        self._admin(request)
        hook_id = self._hook_id(request)
        body = await params.json_object(request)
        try:
            hook, new = await self.service.book.put(hook_id, body)
        except DefinitionError as exc:
            raise ApiError(400, str(exc), code="invalid", field=exc.field) from None
        except SettingsHook as exc:
            raise ApiError(409, str(exc), code="conflict", field="hook") from None
        return web.json_response(self._summary(hook), status=201 if new else 200)

    async def get_hook(self, request: web.Request) -> web.Response:
        """``GET /hooks/{id}``: one hook, as the listing shows it."""
        self._admin(request)
        hook = await self.service.book.find(self._hook_id(request))
        if hook is None:
            raise ApiError(404, "no such hook", field="hook")
        return web.json_response(self._summary(hook))

    async def delete_hook(self, request: web.Request) -> web.Response:
        """``DELETE /hooks/{id}``: remove a hook defined through the API (204)."""
        self._admin(request)
        hook_id = self._hook_id(request)
        try:
            found = await self.service.book.delete(hook_id)
        except SettingsHook as exc:
            raise ApiError(409, str(exc), code="conflict", field="hook") from None
        if not found:
            raise ApiError(404, "no such hook", field="hook")
        return web.Response(status=204)

    async def schedules(self, request: web.Request) -> web.Response:
        """``GET /schedules``: every schedule, its next tick and what the store says of it."""
        self._admin(request)
        scheduler = self.service.scheduler
        out: list[dict[str, Any]] = []
        schedules = list(self.service.triggers.schedules.values())
        entries = [Entry()] * len(schedules)
        if scheduler is not None:
            entries = list(await asyncio.gather(*(scheduler.store.read(s.id) for s in schedules)))
        for schedule, entry in zip(schedules, entries, strict=True):
            now = scheduler.clock() if scheduler is not None else None
            claim = entry.claim
            out.append({**schedule.summary(), "last_tick": _iso(entry.last), "missed": entry.missed,
                        "next_tick": next_tick(schedule.cron, schedule.timezone, now).isoformat() if now else None,
                        # Which replica fired the latest run, and whether it was made (else it is taken
                        # over once the claim is stale).
                        "claim": {"tick": _iso(claim.tick), "by": claim.by, "done": claim.done} if claim else None})
        return web.json_response({"schedules": out})

    async def deliveries(self, request: web.Request) -> web.Response:
        """``GET /triggers/deliveries[?kind=hook|schedule|notification][&limit=N]``: the newest first."""
        self._admin(request)
        kind = request.query.get("kind")
        if kind is not None and kind not in ("hook", "schedule", "notification"):
            raise ApiError(400, "kind: must be hook, schedule or notification", code="invalid", field="kind")
        limit = params.query_int(request, "limit", 100, 1, 500)
        return web.json_response({"deliveries": self.service.recent.list(kind, limit)})

    async def dead_letters(self, request: web.Request) -> web.Response:
        """``GET /triggers/dead-letters``: notifications that never arrived, the newest first."""
        self._admin(request)
        return web.json_response({"dead_letters": list(reversed(self.service.notifier.dead))})


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI paths of the triggers' routes."""
    from ..api.openapi import OPEN, _errors, _json, _path_param, _query

    listing = {"type": "object"}
    hook_id = _path_param("hook", {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,22}[a-z0-9])?$"},
                          "The hook's id (triggers.hooks, or defined through PUT).")
    definition = {
        "type": "object", "required": ["prompt"],
        "description": "The fields of a hook in triggers.hooks; the secret as secret_env (or secret: env:NAME) or "
                       "secret_value (kept by the proxy as a secret, never shown).",
        "properties": {
            "scheme": {"type": "string", "enum": ["github", "hmac-sha256"]},
            "secret_env": {"type": "string"}, "secret": {"type": "string", "pattern": "^(env:.+|stored)$",
                       "description": "env:NAME, or stored: keep the value stored before"},
            "secret_value": {"type": "string", "minLength": 1, "maxLength": 4096, "writeOnly": True},
            "header": {"type": "string"}, "delivery_header": {"type": "string"},
            "match": {"type": "object", "properties": {
                "events": {"type": "array", "items": {"type": "string"}},
                "repositories": {"type": "array", "items": {"type": "string"}},
                "actions": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "array", "items": {"type": "string"}}, "when": {"type": "string"}}},
            "profile": {"type": "string"}, "owner": {"type": "string"}, "agent": {"type": "string"},
            "session": {"type": "string"}, "prompt": {"type": "string"},
            "reuse": {"type": "string", "enum": ["none", "issue"]},
            "max_running": {"type": "integer", "minimum": 0}}}
    shown = _json({"type": "object"}, "The hook as GET /hooks shows it (source: api).")
    return {
        "/hooks/{hook}": {"post": {
            "operationId": "deliverHook", "summary": "An inbound webhook delivery", **OPEN,
            "description": "Signed with the hook's secret (X-Hub-Signature-256, or the hook's header), not an "
                           "API key. 202: an agent was created (or the prompt sent to the one of the same "
                           "issue); 200: a duplicate delivery, or an event the hook does not match, with the "
                           "reason.",
            "parameters": [hook_id],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"202": _json({"type": "object"}, "The agent, with hook, reused and result."),
                          "200": _json({"type": "object"}, "Duplicate, or not matched (with the reason)."),
                          **_errors("400", "401", "404", "413", "422", "429", "503")}},
            "put": {"operationId": "putHook", "summary": "Define or replace a hook (admins)",
                    "description": "Checked as a hook of the settings; a bad definition is 400 naming the field "
                                   "and changes nothing. A hook of the settings cannot be replaced (409).",
                    "parameters": [hook_id],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": definition}}},
                    "responses": {"201": shown, "200": shown,
                                  **_errors("400", "401", "403", "409", "413", "415", "503")}},
            "get": {"operationId": "getHook", "summary": "One hook (admins)", "parameters": [hook_id],
                    "responses": {"200": shown, **_errors("400", "401", "403", "404", "503")}},
            "delete": {"operationId": "deleteHook", "summary": "Delete a hook defined through the API (admins)",
                       "parameters": [hook_id],
                       "responses": {"204": {"description": "Deleted."},
                                     **_errors("400", "401", "403", "404", "409", "503")}}},
        "/hooks": {"get": {"operationId": "listHooks", "summary": "The hooks (admins)",
                           "responses": {"200": _json(listing, "Every hook; where its secret is, never the secret."),
                                         **_errors("401", "403")}}},
        "/schedules": {"get": {"operationId": "listSchedules", "summary": "The schedules (admins)",
                               "responses": {"200": _json(listing, "Every schedule, its last and next tick, "
                                                                     "and the claim of its latest run."),
                                             **_errors("401", "403", "503")}}},
        "/triggers/deliveries": {"get": {
            "operationId": "listDeliveries", "summary": "Recent deliveries in and out (admins)",
            "parameters": [_query("kind", {"type": "string", "enum": ["hook", "schedule", "notification"]},
                                  "Only deliveries of this kind."),
                           _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "At most this many.")],
            "responses": {"200": _json(listing, "The newest first."), **_errors("400", "401", "403")}}},
        "/triggers/dead-letters": {"get": {
            "operationId": "listDeadLetters", "summary": "Notifications that never arrived (admins)",
            "responses": {"200": _json(listing, "The newest first."), **_errors("401", "403")}}},
    }
