"""What the triggers show: ``GET /hooks``, ``GET /schedules``, ``GET /triggers/deliveries`` and
``GET /triggers/dead-letters``. No answer holds a secret, a secret's value or a payload."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api import params
from ..api.auth import principal_of
from ..api.errors import ApiError
from .claims import Entry
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
                web.get("/triggers/dead-letters", self.dead_letters, allow_head=False)]

    @staticmethod
    def _admin(request: web.Request) -> None:
        if not principal_of(request).admin:
            raise ApiError(403, "only admins see the triggers and their deliveries", field="Authorization")

    async def hooks(self, request: web.Request) -> web.Response:
        """``GET /hooks``: every hook, where its secret is (never the secret)."""
        self._admin(request)
        return web.json_response({"hooks": [h.summary() for h in self.service.triggers.hooks.values()]})

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
    """The OpenAPI paths of the triggers' routes (served when a trigger is configured)."""
    from ..api.openapi import OPEN, _errors, _json, _path_param, _query

    listing = {"type": "object"}
    hook_id = _path_param("hook", {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]{0,22}[a-z0-9])?$"},
                          "The hook's id (triggers.hooks).")
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
                          **_errors("400", "401", "404", "413", "422", "429", "503")}}},
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
