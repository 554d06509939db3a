"""Idle culling and the age limit, run beside the API (see :mod:`agentproxy.idle` for the rules).

The proxy notes each request to an agent in a :class:`TrafficClock`: one dict write, no
I/O. The :class:`Culler` wakes every :attr:`~agentproxy.idle.IdlePolicy.resolution`
seconds, hands the times noted since to the backend (k8s: an annotation on the agent's
StatefulSet, written at most once per resolution and agent, which every proxy replica
reads; local: the state file), then suspends the idle agents and deletes the expired ones.
Several replicas cull the same agents without harm: a suspend applies only if the agent
has not changed since it was judged idle, and a suspended agent is not suspended again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from aiohttp import web

from ..backends.base import AgentState, Backend, BackendError, NotFound
from ..backends.suspension import IDLE, utc_now
from ..idle import IdlePolicy
from .metrics import Metrics

log = logging.getLogger("agentproxy.culling")

CONCURRENCY = 16
"""Idle agents whose own API is asked about their activity at the same time, at most."""


class TrafficClock:
    """When each agent last got a proxied request, until the culler takes the times."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._seen: dict[str, float] = {}

    def touch(self, agent_id: str) -> None:
        """A request to the agent now (called on the proxy's path: a dict write, no I/O)."""
        if self.enabled:
            self._seen[agent_id] = time.time()

    def drain(self) -> list[tuple[str, datetime]]:
        """The agents requested since the last drain, with the time of their last request."""
        seen, self._seen = self._seen, {}
        return [(agent_id, datetime.fromtimestamp(at, UTC)) for agent_id, at in seen.items()]


class Culler:
    """Suspends idle agents and deletes expired ones, every ``policy.resolution`` seconds."""

    def __init__(self, backend: Backend, policy: IdlePolicy, traffic: TrafficClock,
                 metrics: Metrics | None = None) -> None:
        self.backend = backend
        self.policy = policy
        self.traffic = traffic
        self.metrics = metrics
        self._asking = asyncio.Semaphore(CONCURRENCY)

    async def run(self) -> None:
        """Cull until cancelled; a failed pass is logged and the next one comes."""
        while True:
            await asyncio.sleep(self.policy.resolution)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the next pass may succeed (the API server is back, ...)
                log.exception("idle culling failed")

    async def run_once(self, now: datetime | None = None) -> None:
        """One pass: record the traffic, then delete the expired agents and suspend the idle."""
        await self.flush()
        now = now or utc_now()
        policy = self.policy
        states = await self.backend.list()
        expired = [s for s in states if policy.expired(s, now)]
        gone = {s.id for s in expired}
        idle = [s for s in states if policy.idle(s, now) and s.id not in gone]
        await asyncio.gather(*(self._expire(s) for s in expired), *(self._consider(s, now) for s in idle))

    async def flush(self) -> None:
        """Hand the requests noted since the last pass to the backend."""
        resolution = self.policy.resolution
        await asyncio.gather(*(self._record(agent_id, when, resolution) for agent_id, when in self.traffic.drain()))

    async def _record(self, agent_id: str, when: datetime, resolution: float) -> None:
        try:
            await self.backend.record_activity(agent_id, when, resolution)
        except BackendError as exc:
            log.warning("cannot record the activity of agent %s: %s", agent_id, exc.message)

    async def _expire(self, state: AgentState) -> None:
        log.info("agent %s/%s is older than agents.max_age: deleting it (its data is kept)", state.session, state.id)
        try:
            await self.backend.delete(state.session, state.id)
        except NotFound:
            return
        except BackendError as exc:
            log.warning("cannot delete expired agent %s: %s", state.id, exc.message)
            return
        if self.metrics is not None:
            self.metrics.expired.inc()

    async def _consider(self, state: AgentState, now: datetime) -> None:
        """Ask the idle agent itself; suspend it unless it is active after all."""
        policy = self.policy
        try:
            async with self._asking:
                active = policy.active_at(await self.backend.activity(state), now)
            if active is not None:
                await self.backend.record_activity(state.id, active)
                return
            # Judged on what was known now: a request or a resume since then wins.
            await self.backend.suspend(state.session, state.id, cause=IDLE,
                                       guard=lambda current: policy.idle(current, now))
        except NotFound:
            pass
        except BackendError as exc:
            log.warning("cannot suspend idle agent %s: %s", state.id, exc.message)


def culling_context(backend: Backend, policy: IdlePolicy, traffic: TrafficClock,
                    metrics: Metrics) -> Callable[[web.Application], AsyncIterator[None]]:
    """An aiohttp cleanup context that runs a :class:`Culler` while the app runs (none when
    neither limit is set)."""
    async def run(app: web.Application) -> AsyncIterator[None]:
        task = None
        if policy.enabled:
            task = asyncio.get_running_loop().create_task(Culler(backend, policy, traffic, metrics).run(),
                                                          name="idle culling")
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return run
