"""Delivery ids shared by the replicas of k8s mode: one small Lease per delivery, created
conditionally, so that a delivery sent to two replicas is handled by one.

A replica that finds a delivery id new in its own log creates the Lease
``agentproxy-delivery-<hash of hook and id>``: created, the delivery is its to handle; a 409
means another replica has it. The Lease says how far that one got (annotation
``agentproxy.io/delivery``): ``handling`` (renewed at the claim), ``done`` (a duplicate from
now on) or ``released`` (its handling failed before anything was made: the sender's retry is
handled by whichever replica gets it). A ``handling`` claim older than :data:`TAKEOVER` seconds
(its replica died mid-delivery) is taken over by a replace at the ``resourceVersion`` read.

Why a Lease per delivery rather than one ledger object of ids: at 100 deliveries a second, a
ledger (a ConfigMap replaced at its ``resourceVersion``) is rewritten whole at each delivery,
grows with every id kept, and every replica's write races every other's (a 409 and a retry per
race); a Lease per delivery is one create of a few hundred bytes, which no other delivery's
write can make fail, plus one replace once it is handled: two small writes per delivery, no
reads on the way of a new one, and no contention but between copies of the same delivery.
Leases are not among the kinds the agents' cache watches.

They are swept by label: each carries the 10-minute window it was made in
(``agentproxy.io/delivery-window``), and every few minutes each replica deletes, in one
``deletecollection``, the Leases of windows other than the current one, the
:data:`KEPT_WINDOWS` before it and the next (a clock a little ahead). So a record lives 20 to
30 minutes, which covers a sender's retries and a redelivery soon after; at 100 deliveries a
second that is at most 180,000 Leases. Later, each replica's own log of ids
(:mod:`agentproxy.triggers.dedupe`) and the agent's id made from the delivery id still keep a
redelivery from making a second agent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from ..errors import Conflict, NotFound
from .kinds import LEASE

log = logging.getLogger("agentproxy.triggers")

PREFIX = "agentproxy-delivery-"
COMPONENT = "hook-delivery"
STATE = "agentproxy.io/delivery"
WINDOW_LABEL = "agentproxy.io/delivery-window"
WINDOW = 600
"""Seconds of one sweep window."""
KEPT_WINDOWS = 2
"""Windows kept before the current one."""
TAKEOVER = 60.0
"""Seconds after which a claim still ``handling`` is taken over (its replica died mid-delivery)."""
SWEEP = 300.0
"""Seconds between two sweeps of a replica."""


def lease_name(hook: str, delivery: str) -> str:
    """The Lease of one delivery id of one hook (any id: the name is a hash of it)."""
    return PREFIX + hashlib.sha256(f"{hook}\n{delivery}".encode()).hexdigest()[:40]


def window_of(now: float) -> str:
    """The sweep window of ``now`` (seconds since the epoch), as a label value."""
    return datetime.fromtimestamp(now - now % WINDOW, UTC).strftime("%Y%m%d%H%M")


def sweep_selector(now: float) -> str:
    """The label selector of the delivery Leases to delete at ``now``."""
    kept = sorted(window_of(now + k * WINDOW) for k in range(-KEPT_WINDOWS, 2))
    return f"app.kubernetes.io/component={COMPONENT},{WINDOW_LABEL} notin ({','.join(kept)})"


def _micro(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def delivery_lease(namespace: str, hook: str, delivery: str, replica: str, now: float) -> dict[str, Any]:
    """The Lease a replica creates to claim a delivery."""
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {
        "name": lease_name(hook, delivery), "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "agentproxy", "app.kubernetes.io/component": COMPONENT,
                   "agentproxy.io/hook": hook, WINDOW_LABEL: window_of(now)},
        "annotations": {STATE: "handling", "agentproxy.io/delivery-id": delivery}},
        "spec": {"holderIdentity": replica, "acquireTime": _micro(now), "renewTime": _micro(now),
                 "leaseDurationSeconds": round(TAKEOVER)}}


def with_state(lease: dict[str, Any], state: str, replica: str | None = None, now: float | None = None
               ) -> dict[str, Any]:
    """``lease`` (as read, with its resourceVersion) in ``state``, taken by ``replica`` at ``now`` if given."""
    meta = {k: v for k, v in lease["metadata"].items() if k != "managedFields"}
    meta["annotations"] = {**(meta.get("annotations") or {}), STATE: state}
    spec = dict(lease.get("spec") or {})
    if replica is not None and now is not None:
        if spec.get("holderIdentity") != replica:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(holderIdentity=replica, acquireTime=_micro(now), renewTime=_micro(now))
    return {**lease, "metadata": meta, "spec": spec}


def claimable(lease: dict[str, Any], now: float, takeover: float = TAKEOVER) -> bool:
    """True when another replica may take the delivery: released, or handled by a replica that
    has not finished for ``takeover`` seconds."""
    state = ((lease.get("metadata") or {}).get("annotations") or {}).get(STATE)
    if state == "released":
        return True
    if state == "done":
        return False
    renewed = (lease.get("spec") or {}).get("renewTime")
    try:
        at = datetime.fromisoformat(str(renewed).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return True  # unreadable: nobody can be said to hold it
    return now - at >= takeover


class DeliveryLeases:
    """The delivery ids of every replica, one Lease each (a
    :class:`~agentproxy.triggers.dedupe.SharedDeliveries`)."""

    def __init__(self, client: Callable[[], Any], namespace: str, field_manager: str, replica: str,
                 clock: Callable[[], float] = time.time, takeover: float = TAKEOVER) -> None:
        self._client = client
        self.namespace = namespace
        self.field_manager = field_manager
        self.replica = replica
        self.clock = clock
        self.takeover = takeover
        self._held: dict[tuple[str, str], dict[str, Any]] = {}

    @property
    def client(self) -> Any:
        """The backend's client (started with the backend, after this is made)."""
        return self._client()

    def _params(self) -> dict[str, str]:
        return {"fieldManager": self.field_manager}

    async def claim(self, hook: str, delivery: str) -> bool:
        """True when this replica now handles ``delivery`` (it created or took over its Lease)."""
        path = LEASE.item(self.namespace, lease_name(hook, delivery))
        for _ in range(3):
            now = self.clock()
            try:
                self._held[(hook, delivery)] = await self.client.request(
                    "POST", LEASE.collection(self.namespace), body=delivery_lease(
                        self.namespace, hook, delivery, self.replica, now), params=self._params(), verb="create",
                    resource=LEASE.plural)
                return True
            except Conflict:
                pass  # another replica has it, or had it
            live = await self.client.get(path, resource=LEASE.plural)
            if live is None:
                continue  # swept meanwhile: create it again
            if not claimable(live, now, self.takeover):
                return False
            try:
                self._held[(hook, delivery)] = await self.client.request(
                    "PUT", path, body=with_state(live, "handling", self.replica, now), params=self._params(),
                    verb="update", resource=LEASE.plural)
                return True
            except Conflict:
                return False  # another replica took it over first
            except NotFound:
                continue
        return False

    async def _settle(self, hook: str, delivery: str, state: str) -> None:
        held = self._held.pop((hook, delivery), None)
        if held is None:
            return
        try:
            await self.client.request("PUT", LEASE.item(self.namespace, held["metadata"]["name"]),
                                      body=with_state(held, state), params=self._params(), verb="update",
                                      resource=LEASE.plural)
        except (Conflict, NotFound):
            pass  # taken over (this replica was too slow) or swept: the other replica's word stands

    async def keep(self, hook: str, delivery: str) -> None:
        """Mark the delivery handled: a duplicate for every replica from now on."""
        await self._settle(hook, delivery, "done")

    async def release(self, hook: str, delivery: str) -> None:
        """Give the delivery back: the sender's retry is handled by whichever replica gets it."""
        await self._settle(hook, delivery, "released")

    async def sweep(self) -> None:
        """Delete the Leases of old windows in one call."""
        await self.client.request("DELETE", LEASE.collection(self.namespace),
                                  params={"labelSelector": sweep_selector(self.clock())}, verb="deletecollection",
                                  resource=LEASE.plural)

    async def sweep_forever(self, every: float = SWEEP, wanted: Callable[[], Awaitable[bool]] | None = None) -> None:
        """Sweep now and every ``every`` seconds until cancelled (a failed sweep: the next one),
        when ``wanted`` says so (a proxy without hooks makes no delivery Leases: no call then)."""
        while True:
            try:
                if wanted is None or await wanted():
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the next sweep deletes what this one left
                log.warning("the sweep of old delivery records failed: %s", exc)
            await asyncio.sleep(every)
