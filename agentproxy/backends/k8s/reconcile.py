"""Keep each agent's objects as the templates render them.

Watch events schedule a reconcile of the agent they belong to (coalesced per
agent). A Service or ConfigMap deleted or edited out of band is re-applied
(forcing ownership back, as the object is agentproxy's); labelled objects the
templates no longer render are pruned, like ``kubectl apply --prune``. PVCs are
never pruned: they hold the agents' data.

The reconciler sees its backend through :class:`ReconcileHost` alone, and its
rules (what drifted, what is a stray) are those of :mod:`.model`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from ... import naming
from ...spec import AgentSpec
from ..base import BackendError
from .kinds import STATEFULSET, Kind
from .model import OWNED, as_applied, drifted, strays

log = logging.getLogger(__name__)


class ReconcileHost(Protocol):
    """What the reconciler needs from its backend."""

    def spec_of(self, agent_id: str) -> AgentSpec | None:
        """The agent's spec as stored in the cluster."""

    def render(self, spec: AgentSpec) -> list[dict[str, Any]]:
        """The agent's objects as the templates render them."""

    def busy(self, agent_id: str) -> bool:
        """True while this proxy creates or deletes the agent."""

    def cached(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object as the watch cache holds it."""

    def cached_of_agent(self, kind: Kind, agent_id: str) -> list[dict[str, Any]]:
        """The cached objects of ``kind`` labelled for the agent."""

    async def apply(self, obj: dict[str, Any], *, force: bool | None = None) -> dict[str, Any]:
        """Server-side apply of one object."""

    async def delete_object(self, kind: Kind, name: str) -> bool:
        """Delete one object; False when it was gone."""


class Reconciler:
    """Debounced, per-agent reconciliation for one k8s backend."""

    def __init__(self, host: ReconcileHost, delay: float = 0.3, settle: float = 3.0) -> None:
        self.host = host
        self.delay = delay
        self.settle = settle
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._applied_at: dict[str, float] = {}
        self.reapplied = 0
        self.pruned = 0

    def note_applied(self, agent_id: str) -> None:
        """This proxy has just applied the agent's objects: the watch may show
        older versions for a moment, which are no reason to apply again."""
        self._applied_at[agent_id] = time.monotonic()

    def schedule(self, agent_id: str, delay: float | None = None) -> None:
        """Reconcile the agent after ``delay`` seconds, unless a pass is already scheduled."""
        if agent_id not in self._pending:
            self._pending[agent_id] = asyncio.create_task(
                self._run(agent_id, self.delay if delay is None else delay), name=f"reconcile-{agent_id}")

    def forget(self, agent_id: str) -> None:
        """Call off the agent's scheduled pass."""
        task = self._pending.pop(agent_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Call off every scheduled pass."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()

    async def _run(self, agent_id: str, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            # Events arriving from here on schedule a fresh pass.
            self._pending.pop(agent_id, None)
            since = time.monotonic() - self._applied_at.get(agent_id, float("-inf"))
            if since < self.settle or self.host.busy(agent_id):
                self.schedule(agent_id, max(self.settle - since, self.delay))
                return
            self._applied_at.pop(agent_id, None)
            await self.reconcile(agent_id)
        except asyncio.CancelledError:
            raise
        except BackendError as exc:
            log.warning("reconciling agent %s failed: %s", agent_id, exc)
        except Exception:
            log.exception("reconciling agent %s failed", agent_id)

    async def reconcile(self, agent_id: str) -> None:
        """One pass: prune strays, re-apply missing or drifted objects."""
        host = self.host
        spec = host.spec_of(agent_id)
        sts = host.cached(STATEFULSET, naming.statefulset_name(agent_id))
        for kind in OWNED:
            for name in strays(agent_id, kind, host.cached_of_agent(kind, agent_id),
                               orphaned=spec is None and sts is None):
                log.info("pruning %s %s (no longer rendered for agent %s)", kind.name, name, agent_id)
                await host.delete_object(kind, name)
                self.pruned += 1
        if spec is None or sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        desired = {o["kind"]: o for o in host.render(spec)}
        for kind in OWNED:
            want = as_applied(desired[kind.name], sts)
            name = want["metadata"]["name"]
            live = host.cached(kind, name)
            if drifted(live, want):
                log.info("re-applying %s %s (%s out of band)", kind.name, name,
                         "deleted" if live is None else "changed")
                await host.apply(want, force=True)
                self.reapplied += 1
