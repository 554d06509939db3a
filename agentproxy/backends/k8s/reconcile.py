"""Keep each agent's objects as agentproxy applies them.

Watch events schedule a reconcile of the agent they belong to (coalesced per
agent). Any field agentproxy applies on the StatefulSet, Service, ConfigMap or
PVC that another manager changed or removed, and any of these objects deleted
out of band, is applied again with force (server-side apply takes the fields
back; fields of other managers stay as they are), on the condition of the
resourceVersion compared: of several replicas that see one drift, one repairs it
and the others' applies are refused, so it is repaired and counted once. Each
repair is logged with the fields that drifted and counted by kind. Labelled objects the templates no
longer render are pruned, like ``kubectl apply --prune``; PVCs are never pruned:
they hold the agents' data. A claim without its StatefulSet long after it was made
is removed: a create that never finished (the proxy that made it died, or could not
roll it back), or an agent whose StatefulSet was deleted out of band (the claim is
not owned by it, so the garbage collector leaves it; see :data:`.plan.OWNED`).

A pass acts only on a whole, current view of the cache (every kind listed, every watch up;
see ``ReconcileHost.current``): while a restarted proxy lists its kinds one by one, claims
would look abandoned and objects missing that exist. It looks again later.

A pass that found nothing to apply remembers what it compared (the agent's spec and what a
repair reads of each of its four objects: not their status): while none of it changed, the next
pass of the agent (a status write, a watch restarted, a relist, an Event) renders and compares
nothing again, since what is rendered and what is held are the same as then. Strays and
abandoned claims are looked for on every pass. A start's pass over every agent is one task that
takes the agents one after another, yielding to the event loop every few milliseconds
(:meth:`Reconciler.sweep`): with 10,000 agents it is seconds of CPU, which requests are served
between, not a block of them.

A warm pool's member whose ConfigMap is gone is not repaired either: its token's Secret went
with the ConfigMap, so the pool replaces it (see :mod:`.pool`).

A deleted StatefulSet is not re-created: its absence is how a delete starts (see
:func:`.model.delete_targets`), for every proxy replica.

The reconciler sees its backend through :class:`ReconcileHost` alone; what drifted and
is applied again is decided by :func:`.plan.plan` (a repair), what is a stray or an
abandoned claim by :mod:`.model`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from ... import naming
from ...spec import AgentSpec
from ..base import BackendError, Conflict
from .kinds import CONFIGMAP, STATEFULSET, Kind
from .model import STRAY_KINDS, AgentObjects, abandoned_claim, created_at, strays
from .plan import Purpose, Step, carry_out, plan
from .poolmembers import is_member

log = logging.getLogger(__name__)

CLAIM_GRACE = 60.0
"""Seconds after which a claim without a StatefulSet counts as abandoned (a create takes far less)."""
SWEEP_SLICE = 0.01
"""Seconds a sweep reconciles agents before it lets the event loop run what waits."""
YOUNG = 5.0
"""Seconds after its StatefulSet was made during which an agent is left to the create that is
applying it (in this proxy or another replica): a half-applied agent is not drift."""


class ReconcileHost(Protocol):
    """What the reconciler needs from its backend."""

    def spec_of(self, agent_id: str) -> AgentSpec | None:
        """The agent's spec as stored in the cluster."""

    def render(self, spec: AgentSpec) -> list[dict[str, Any]]:
        """The agent's objects as the templates render them."""

    def busy(self, agent_id: str) -> bool:
        """True while this proxy creates or deletes the agent."""

    def current(self) -> bool:
        """True while the cache is a whole, current view (every kind listed, every watch up)."""

    def cached(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object as the watch cache holds it."""

    def cached_of_agent(self, kind: Kind, agent_id: str) -> list[dict[str, Any]]:
        """The cached objects of ``kind`` labelled for the agent."""

    async def apply(self, obj: dict[str, Any], *, force: bool | None = None) -> dict[str, Any]:
        """Server-side apply of one object."""

    async def delete_object(self, kind: Kind, name: str, *, seen: str | None = None) -> bool:
        """Delete one object; False when it was gone. With ``seen``, only that version of it
        (:class:`~..base.Conflict` when it changed since)."""

    async def exists(self, kind: Kind, name: str) -> bool:
        """Whether the API server holds the object now (a read of it, not of the cache)."""


class Reconciler:
    """Debounced, per-agent reconciliation for one k8s backend."""

    def __init__(self, host: ReconcileHost, delay: float = 0.3, settle: float = 3.0,
                 claim_grace: float = CLAIM_GRACE, young: float = YOUNG,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.host = host
        self.delay = delay
        self.settle = settle
        self.claim_grace = claim_grace
        self.young = young
        self._now = now
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._applied_at: dict[str, float] = {}
        self._clean: dict[str, tuple[Any, ...]] = {}
        """What the agent's last pass that found nothing to apply compared (see :func:`_compared`)."""
        self._sweep: asyncio.Task[None] | None = None
        self._sweeping: set[str] = set()
        self.compared = 0
        """Passes that rendered and compared the agent's objects (the others found them as a clean pass left them)."""
        self.repairs: Counter[str] = Counter()
        """Objects applied again because they drifted, by kind."""
        self.pruned = 0
        self.abandoned = 0
        """Claims removed because their create never finished."""

    @property
    def reapplied(self) -> int:
        """Objects applied again, of every kind."""
        return sum(self.repairs.values())

    def note_applied(self, agent_id: str) -> None:
        """This proxy has just applied the agent's objects: the watch may show
        older versions for a moment, which are no reason to apply again."""
        self._applied_at[agent_id] = time.monotonic()

    def schedule(self, agent_id: str, delay: float | None = None) -> None:
        """Reconcile the agent after ``delay`` seconds, unless a pass is already scheduled."""
        if agent_id not in self._pending:
            self._pending[agent_id] = asyncio.create_task(
                self._run(agent_id, self.delay if delay is None else delay), name=f"reconcile-{agent_id}")

    def sweep(self, agent_ids: Iterable[str]) -> None:
        """Reconcile each of ``agent_ids`` (a start's: every agent) after ``delay`` seconds, one
        after another in one task that yields to the event loop every :data:`SWEEP_SLICE`; an agent
        with a pass scheduled meanwhile is left to that pass. A sweep under way is replaced."""
        if self._sweep is not None:
            self._sweep.cancel()
        self._sweeping = set(agent_ids)
        self._sweep = asyncio.create_task(self._sweep_all(list(self._sweeping)), name="reconcile-sweep")

    async def _sweep_all(self, agent_ids: list[str]) -> None:
        try:
            await asyncio.sleep(self.delay)
            slice_end = time.monotonic() + SWEEP_SLICE
            for agent_id in agent_ids:
                if agent_id not in self._sweeping:
                    continue  # forgotten meanwhile
                if time.monotonic() >= slice_end:
                    await asyncio.sleep(0)  # let what waits run
                    slice_end = time.monotonic() + SWEEP_SLICE
                await self._run(agent_id, None, swept=True)
                self._sweeping.discard(agent_id)
        finally:
            if self._sweep is asyncio.current_task():  # not replaced by another sweep
                self._sweeping = set()

    @property
    def waiting(self) -> int:
        """Agents whose pass is scheduled or waits in a sweep."""
        return len(self._sweeping) + sum(1 for agent_id in self._pending if agent_id not in self._sweeping)

    def forget(self, agent_id: str) -> None:
        """Call off the agent's scheduled pass."""
        self._sweeping.discard(agent_id)
        self._clean.pop(agent_id, None)
        task = self._pending.pop(agent_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Call off every scheduled pass."""
        tasks = list(self._pending.values()) + ([self._sweep] if self._sweep is not None else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pending.clear()
        self._sweep = None

    async def _run(self, agent_id: str, delay: float | None, *, swept: bool = False) -> None:
        try:
            if delay is not None:
                await asyncio.sleep(delay)
            if swept:
                if agent_id in self._pending:
                    return  # a pass scheduled meanwhile looks at the agent
            else:
                # Events arriving from here on schedule a fresh pass.
                self._pending.pop(agent_id, None)
            if not self.host.current():
                # A partial or stale view (a kind not listed yet, a watch down) shows claims
                # without StatefulSets and objects missing that exist: look again later.
                self.schedule(agent_id, max(self.settle, self.delay))
                return
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
        """One pass: prune strays, remove an abandoned claim, apply again what drifted."""
        host = self.host
        spec = host.spec_of(agent_id)
        objects = AgentObjects.of(agent_id, host.cached)
        sts = objects.statefulset
        for kind in STRAY_KINDS:
            for name in strays(agent_id, kind, host.cached_of_agent(kind, agent_id),
                               orphaned=spec is None and sts is None):
                log.info("pruning %s %s (no longer rendered for agent %s)", kind.name, name, agent_id)
                await host.delete_object(kind, name)
                self.pruned += 1
        compared = _compared(spec, objects)
        if self._clean.pop(agent_id, None) == compared:
            # Nothing the last clean pass compared has changed: the same render, the same objects.
            self._clean[agent_id] = compared
            return
        if spec is None:
            return
        if objects.claim is None and is_member(objects):
            # A pool member without its ConfigMap is half-made: its token's Secret (owned by the
            # ConfigMap) went with it, so no claim could bind it. The pool replaces it.
            return
        if sts is None:
            await self._unfinished(agent_id, objects)
            return
        if sts["metadata"].get("deletionTimestamp"):
            return
        age = (self._now() - created_at(sts)).total_seconds()
        if age < self.young:
            self.schedule(agent_id, self.young - age + self.delay)
            return
        self.compared += 1
        repair = plan(host.render(spec), objects, Purpose.REPAIR)
        if not repair.steps:
            self._clean[agent_id] = compared
        for step in repair.steps:
            log.warning("drift repair: applying %s %s again; %s", step.kind, step.name, step.drifted)
        # The owner before what it owns; one failure does not stop the others.
        def failed(step: Step, exc: BackendError) -> None:
            if isinstance(exc, Conflict):
                # Changed since it was compared (another replica's repair, another manager's
                # write): the next pass compares the new version.
                log.info("drift repair of %s %s: changed since it was compared; looking again", step.kind, step.name)
                self.schedule(agent_id)
                return
            log.warning("drift repair of %s %s failed: %s", step.kind, step.name, exc.message)
        for step, _ in await carry_out(repair, host.apply, on_failure=failed):
            self.repairs[step.kind] += 1

    async def _unfinished(self, agent_id: str, objects: AgentObjects) -> None:
        """A claim without a StatefulSet: a create under way (here or in another proxy), or one
        that never finished. Once it is older than any create takes, remove it (never the PVC:
        its data may be older than the claim)."""
        left = abandoned_claim(objects, self._now(), self.claim_grace)
        if left is None:
            return
        if left > 0:
            self.schedule(agent_id, left + self.delay)
            return
        claim = objects.claim
        assert claim is not None
        # A create does not write its claim again once it made it: whether it has applied its
        # StatefulSet since the cache's view is the server's to say (one read, on this rare path).
        if await self.host.exists(STATEFULSET, naming.statefulset_name(agent_id)):
            log.info("the claim of agent %s has its StatefulSet now; keeping it", agent_id)
            self.schedule(agent_id)
            return
        log.warning("removing the claim of agent %s: no StatefulSet %.0f s after it was made (a create that did "
                    "not finish, or a StatefulSet deleted out of band)", agent_id, self.claim_grace)
        # Only the version that looked abandoned: a claim written since (a pool's claim of a
        # member, a repair) is looked at again first.
        try:
            await self.host.delete_object(CONFIGMAP, naming.configmap_name(agent_id),
                                          seen=claim["metadata"].get("resourceVersion"))
        except Conflict:
            log.info("the claim of agent %s changed since it looked abandoned; looking again", agent_id)
            self.schedule(agent_id)
            return
        self.abandoned += 1


def _compared(spec: AgentSpec | None, objects: AgentObjects) -> tuple[Any, ...]:
    """What a pass's render and comparison read: the spec (with the StatefulSet's suspension,
    all the render depends on besides the settings, fixed for the process) and, of each applied
    object, what a repair reads of it (see :func:`.plan.plan` and :mod:`.drift`): its uid, its
    deletion, its labels, annotations and owners, its spec and data. Not its status nor its
    resourceVersion: the status writes of the controllers (a pod ready, a volume bound, a claim
    provisioned), by far most of an agent's changes, leave it as it was. The parts are the
    cache's own, which an object's next version shares while they are equal (see
    :mod:`.sharing`): comparing two of them mostly compares an object with itself."""
    parts: list[Any] = [spec]
    for obj in (objects.pvc, objects.statefulset, objects.service, objects.claim):
        if obj is None:
            parts.append(None)
            continue
        meta = obj["metadata"]
        parts.append((meta.get("uid"), meta.get("deletionTimestamp"), meta.get("labels"), meta.get("annotations"),
                      meta.get("ownerReferences"), obj.get("spec"), obj.get("data")))
    return tuple(parts)
