"""Rolling back creates cut off half-way, so that the next create of the id starts clean.

A create that fails after its claim removes what it made at once. When the API server does not
answer, the removal waits until it answers again and the watch cache has caught up: requests
that timed out here may still have been carried out, by this proxy or another replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

from ..base import AgentLocks, BackendError, Unavailable
from . import model
from .kinds import Kind

log = logging.getLogger(__name__)


class RollbackHost(Protocol):
    """What rolling back needs from its backend."""

    locks: AgentLocks

    def cached(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object as the watch cache holds it."""

    async def delete_object(self, kind: Kind, name: str) -> bool:
        """Delete one object; False when it was gone."""

    def spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coroutine`` in the background until it ends or the backend closes."""

    def caught_up(self) -> bool:
        """True while the API server answers and the watch cache is current with it."""


class Rollbacks:
    """The creates of one backend still to roll back, and how many were."""

    def __init__(self, host: RollbackHost, *, check_interval: float, settle: float) -> None:
        self._host = host
        self._check_interval = check_interval
        """Seconds between looks at whether the API server answers again."""
        self._settle = settle
        """Seconds to wait once it answers, for what it did meanwhile to reach the cache."""
        self._pending: dict[str, bool] = {}
        """Agent id -> whether its data goes too."""
        self._task: asyncio.Task[None] | None = None
        self.done = 0
        """Rollbacks that removed something (the ``k8s_rollbacks_total`` metric)."""

    def settled(self, agent_id: str) -> None:
        """A create or repeat of the agent got to its end: nothing of it is left to roll back."""
        self._pending.pop(agent_id, None)

    async def now(self, agent_id: str, *, delete_data: bool) -> None:
        """Remove what a failed create made. While the API server does not answer, the
        rollback waits until it does (see :meth:`later`)."""
        removed = False
        for kind, name in model.delete_targets(agent_id, purge=delete_data):
            try:
                removed = await self._host.delete_object(kind, name) or removed
            except Unavailable as exc:
                log.warning("the create of agent %s is rolled back once the API server answers (%s)",
                            agent_id, exc.message)
                self.later(agent_id, delete_data=delete_data)
                return
            except BackendError as exc:
                log.warning("could not roll back %s %s: %s", kind.name, name, exc)
        self._pending.pop(agent_id, None)
        self.done += removed

    def later(self, agent_id: str, *, delete_data: bool) -> None:
        """Roll the agent's create back once the API server answers."""
        self._pending[agent_id] = delete_data or self._pending.get(agent_id, False)
        if self._task is None or self._task.done():
            self._task = self._host.spawn(self._finish(), "rollbacks")

    async def _finish(self) -> None:
        """Roll back the creates cut off while the API server did not answer, once it answers and
        the cache has caught up. Each under its agent's lock; an agent that is whole by then (a
        create, here or in another replica, finished it) is left alone."""
        while self._pending:
            if not self._host.caught_up():
                await asyncio.sleep(self._check_interval)
                continue
            await asyncio.sleep(self._settle)
            for agent_id in list(self._pending):
                async with self._host.locks.hold(agent_id):
                    if agent_id not in self._pending:
                        continue
                    delete_data = self._pending.pop(agent_id)
                    if self._whole(agent_id):
                        log.info("the create of agent %s was finished meanwhile; nothing to roll back", agent_id)
                        continue
                    log.info("rolling back the unfinished create of agent %s", agent_id)
                    await self.now(agent_id, delete_data=delete_data)

    def _whole(self, agent_id: str) -> bool:
        """True when the agent's create got to its end: its Service is owned by the StatefulSet."""
        return model.whole(model.AgentObjects.of(agent_id, self._host.cached))
