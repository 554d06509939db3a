"""What the triggers show: ``GET /hooks``, ``GET /schedules``, ``GET /triggers/deliveries`` and
``GET /triggers/dead-letters``. No answer holds a secret, a secret's value or a payload."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..api import params
from ..api.auth import principal_of
from ..api.errors import ApiError

if TYPE_CHECKING:
    from .service import TriggerService


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
        state: dict[str, Any] = {}
        if scheduler is not None:
            with scheduler.store.locked() as data:
                state = dict(data)
        for schedule in self.service.triggers.schedules.values():
            from .schedules import next_tick
            entry = state.get(schedule.id, {})
            now = scheduler.clock() if scheduler is not None else None
            out.append({**schedule.summary(), "last_tick": entry.get("last"), "missed": entry.get("missed", 0),
                        "next_tick": next_tick(schedule.cron, schedule.timezone, now).isoformat() if now else None})
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
