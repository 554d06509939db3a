"""The triggers of one application: hooks, schedules and notifications wired to the API.

:func:`install` adds the routes, lets ``POST /hooks/{id}`` through without an API key (its
signature is its key), and runs the scheduler and the notifier while the app runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ..api.context import ApiContext
from ..backends.base import AgentStatus, NotFound
from ..teams.http import team_spec
from .config import MAX_PROMPT, Schedule, Triggers
from .dedupe import DeliveryLog, SharedDeliveries
from .hookbook import HookBook
from .hooks import TAG, HookRoutes, principal_for
from .hookstore import HookStore, LocalHookStore
from .notifier import Notifier
from .records import Recent, RecentCollector
from .routes import TriggerRoutes
from .scheduler import ClaimStore, Scheduler, Store

log = logging.getLogger("agentproxy.triggers")

BUSY = (AgentStatus.PENDING, AgentStatus.STARTING)


def state_dir(settings: Any) -> Path:
    """Where local mode keeps the triggers' files: ``<data dir>/triggers``."""
    return Path(os.path.expanduser(settings.local_mode.data_dir)).absolute() / "triggers"


def _replica() -> str:
    """This proxy's name among replicas: ``<host>-<pid>`` (a pod's host name is the pod's name)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def schedule_agent_id(schedule: Schedule, tick: datetime) -> str:
    """The agent of one tick: the same for every replica and every attempt."""
    return f"{schedule.id}-{tick.astimezone(UTC):%Y%m%d%H%M}"


class TriggerService:
    """Hooks, schedules and notifications of one app, and the HTTP client they share."""

    def __init__(self, ctx: ApiContext, triggers: Triggers, replica: str | None = None) -> None:
        self.ctx = ctx
        self.triggers = triggers
        self.recent = Recent()
        self.client: aiohttp.ClientSession | None = None
        root = state_dir(ctx.settings)
        self.deliveries = DeliveryLog(root / "deliveries")
        # k8s mode: a ConfigMap and a Secret, and a Lease per delivery id, which replicas sharing no
        # disk share; else files of the data directory.
        shared_store = getattr(ctx.backend, "hook_store", None)
        store: HookStore = shared_store() if shared_store is not None else LocalHookStore(root)
        section = getattr(ctx.settings, "triggers", None)
        self.book = HookBook(triggers.hooks, store, getattr(getattr(ctx.settings, "agents", None), "commands", None),
                             getattr(section, "prompt_max", MAX_PROMPT))
        claims = getattr(ctx.backend, "delivery_claims", None)
        self.shared: SharedDeliveries | None = claims(replica or _replica()) if claims is not None else None
        self.hooks = HookRoutes(ctx, self.book, self.deliveries, self.recent, self.http, self.shared)
        self.notifier = Notifier(ctx.backend, triggers.notifications, triggers.delivery, self.recent, self.http)
        self.scheduler: Scheduler | None = None
        if triggers.schedules:
            # k8s mode: Leases in the agents' namespace, which replicas sharing no disk share; else the
            # data directory's file, which every proxy sharing that directory shares.
            shared = getattr(ctx.backend, "schedule_claims", None)
            claim_store: Store = shared() if shared is not None else ClaimStore(root)
            self.scheduler = Scheduler(dict(triggers.schedules), claim_store, self.fire, replica or _replica(),
                                       recent=self.recent)
        self._loop: asyncio.Task[Any] | None = None
        self._sweep: asyncio.Task[Any] | None = None

    def http(self) -> aiohttp.ClientSession:
        """The shared client (open while the app runs)."""
        if self.client is None:
            raise RuntimeError("the triggers' HTTP client is not open")
        return self.client

    async def fire(self, schedule: Schedule, tick: datetime) -> str:
        """The run of one tick: its overlap policy, then the agent."""
        backend = self.ctx.backend
        tag = f"schedule/{schedule.id}"
        agent_id = schedule_agent_id(schedule, tick)
        earlier = [s for s in await backend.list() if s.spec.tags.get(TAG) == tag and s.id != agent_id]
        busy = [s for s in earlier if await self._working(s)]
        if busy and schedule.overlap == "skip":
            return f"skipped: {busy[0].id} is still working"
        for state in busy:  # replace
            with contextlib.suppress(NotFound):
                await backend.delete(state.session, state.id)
        prompt = schedule.run.prompt.render({"schedule": schedule.id, "tick": tick.astimezone(UTC).isoformat(),
                                             "timezone": schedule.timezone})
        principal = principal_for(self.ctx, schedule.run.owner)
        spec = team_spec(self.ctx.teams, self.ctx.settings, principal, schedule.run.session,
                         {"id": agent_id, "agent": schedule.run.agent, "message": prompt,
                          "profile": schedule.run.profile})
        spec = dataclasses.replace(spec, tags={**spec.tags, TAG: tag})
        async with self.ctx.quotas.admit(principal, spec, new_agent=True, starts=True):
            await asyncio.shield(backend.create(spec, any_session=True))
        return f"created {agent_id}" + (f", replaced {', '.join(s.id for s in busy)}" if busy else "")

    async def _working(self, state: Any) -> bool:
        """True while the agent of an earlier run still works (starting, or agentapi running)."""
        if state.suspended or state.status in (AgentStatus.FAILED, AgentStatus.STOPPED, AgentStatus.SUSPENDED):
            return False
        if state.status in BUSY:
            return True
        try:
            activity = await self.ctx.backend.activity(state)
        except Exception:  # noqa: BLE001 - an agent that cannot tell is taken as working: no second run on top
            return True
        return activity.status == "running"

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """The app's cleanup context: the client, the notifier and the scheduler while it runs."""
        self.client = aiohttp.ClientSession()
        self.notifier.start()
        if self.scheduler is not None:
            self._loop = asyncio.create_task(self.scheduler.run_forever())
        sweep = getattr(self.shared, "sweep_forever", None)
        if sweep is not None:
            async def any_hooks() -> bool:
                return bool(await self.book.all())

            self._sweep = asyncio.create_task(sweep(wanted=any_hooks))
        try:
            yield
        finally:
            for task in (self._loop, self._sweep):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await self.notifier.close()
            await self.hooks.close()
            await self.client.close()
            self.client = None


TRIGGERS = web.AppKey("agentproxy.triggers", TriggerService)
"""Where the app keeps its :class:`TriggerService`."""


def install(app: web.Application, ctx: ApiContext, triggers: Triggers, add: Any) -> TriggerService:
    """Add the triggers' routes and background work to ``app``; ``add`` registers route tables."""
    service = TriggerService(ctx, triggers)
    app[TRIGGERS] = service
    ctx.auth.open_requests.append(lambda r: r.method == "POST" and r.path.startswith("/hooks/"))
    add(service.hooks.routes())
    add(TriggerRoutes(service).routes())
    app.cleanup_ctx.append(service.context)
    ctx.metrics.registry.register(RecentCollector(service.recent))
    return service
