"""Keep each agent's objects as the templates render them.

Watch events schedule a reconcile of the agent they belong to (coalesced per
agent). A Service or ConfigMap deleted or edited out of band is re-applied
(forcing ownership back, as the object is agentproxy's); labelled objects the
templates no longer render are pruned, like ``kubectl apply --prune``. PVCs are
never pruned: they hold the agents' data.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import TYPE_CHECKING, Any

from ... import naming
from ..base import BackendError
from .cache import CONFIGMAP, SERVICE, STATEFULSET

if TYPE_CHECKING:
    from .backend import K8sBackend

log = logging.getLogger(__name__)


def with_owner(obj: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` owned by ``owner`` (deleted with it by the garbage collector)."""
    owned = copy.deepcopy(obj)
    owned["metadata"]["ownerReferences"] = [owner]
    return owned


def contains(live: Any, desired: Any) -> bool:
    """True when every field of ``desired`` is in ``live`` with the same value
    (the server may add defaults; it may not change or drop what we set)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(
            contains(a, b) for a, b in zip(live, desired))
    return live == desired


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    keep = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
    return {"metadata": keep, **{k: v for k, v in obj.items() if k in ("spec", "data")}}


class Reconciler:
    """Debounced, per-agent reconciliation for one :class:`K8sBackend`."""

    def __init__(self, backend: "K8sBackend", delay: float = 0.3, settle: float = 3.0) -> None:
        self.backend = backend
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
        if agent_id not in self._pending:
            self._pending[agent_id] = asyncio.create_task(
                self._run(agent_id, self.delay if delay is None else delay), name=f"reconcile-{agent_id}")

    def forget(self, agent_id: str) -> None:
        task = self._pending.pop(agent_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
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
            if since < self.settle or self.backend.creating(agent_id):
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
        backend, cache, client = self.backend, self.backend.cache, self.backend.client
        assert cache is not None and client is not None
        names = naming.object_names(agent_id)
        expected = {SERVICE.name: names["service"], CONFIGMAP.name: names["configmap"]}
        spec = backend.spec_of(agent_id)
        sts = cache.get(STATEFULSET, names["statefulset"])
        for kind in (SERVICE, CONFIGMAP):
            for obj in cache.objects(kind):
                labels = obj["metadata"].get("labels") or {}
                name = obj["metadata"]["name"]
                stray = name != expected[kind.name]
                orphan = spec is None and sts is None
                if labels.get(naming.LABEL_AGENT_ID) == agent_id and (stray or orphan):
                    log.info("pruning %s %s (no longer rendered for agent %s)", kind.name, name, agent_id)
                    await client.delete(kind.item(cache.namespace, name), resource=kind.plural)
                    self.pruned += 1
        if spec is None or sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        desired = {o["kind"]: o for o in backend.render(spec)}
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"],
                 "uid": sts["metadata"]["uid"]}
        for kind in (SERVICE, CONFIGMAP):
            want = with_owner(desired[kind.name], owner)
            live = cache.get(kind, expected[kind.name])
            if live is None or not contains(live, _comparable(want)):
                log.info("re-applying %s %s (%s out of band)", kind.name, expected[kind.name],
                         "deleted" if live is None else "changed")
                await client.apply(want, field_manager=backend.k8s.field_manager, force=True)
                self.reapplied += 1
