"""``/healthz`` (the process answers) and ``/readyz`` (the backend can do its work)."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..backends.base import Backend
from .errors import error_response

log = logging.getLogger("agentproxy.api")

READY_TIMEOUT = 5.0
"""Seconds ``/readyz`` waits for the backend's answer."""


class Health:
    """The probe routes."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.get("/healthz", self.healthz, allow_head=False),
                web.get("/readyz", self.readyz, allow_head=False)]

    async def healthz(self, request: web.Request) -> web.Response:
        """Always 200 while the event loop runs."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """200 when ``backend.readiness()`` finds nothing wrong within :data:`READY_TIMEOUT`,
        else 503 saying why."""
        try:
            problem = await asyncio.wait_for(self.backend.readiness(), READY_TIMEOUT)
        except TimeoutError:
            problem = f"the {self.backend.mode} backend did not say within {READY_TIMEOUT:g} s whether it is ready"
        except Exception as exc:  # a failing check means "not ready", not a 500
            log.warning("backend health check failed: %s", exc)
            problem = f"the {self.backend.mode} backend's readiness check failed: {exc}"
        if problem is None:
            return web.json_response({"status": "ready"})
        return error_response(503, "unavailable", problem, headers={"Retry-After": "5"})
