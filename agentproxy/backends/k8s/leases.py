"""The schedules' claims of k8s mode: one ``coordination.k8s.io/v1`` Lease per schedule
(``agentproxy-schedule-<id>``) in the agents' namespace, so that replicas sharing no disk fire
each tick once.

Each step of a schedule's entry is a read of its Lease, the pure step
(:func:`~agentproxy.triggers.claims.claim_tick` or :func:`~agentproxy.triggers.claims.finish`),
and, when the entry changed, a conditional write of the Lease
(:func:`~agentproxy.triggers.claims.lease_for`): a create when there was none, else a replace
carrying the ``resourceVersion`` that was read. When two replicas write at once, the API server
takes one and answers the other 409; that one reads the Lease again and steps again from what
the winner wrote (which is then, typically, the winner's claim: nothing to do). The calls go
through :class:`~.client.Client`, as every call of this backend.
"""

from __future__ import annotations

from typing import Any

from ...triggers.claims import TAKEOVER, Entry, entry_from_lease, lease_for, lease_name
from ...triggers.scheduler import Change
from ..errors import Conflict, Unavailable
from .kinds import LEASE

ATTEMPTS = 10
"""Reads and writes of one step before giving up (each lost race is another replica's write)."""


class ScheduleLeases:
    """The claims of every schedule, in Leases of one namespace (a :class:`~agentproxy.triggers.scheduler.Store`)."""

    def __init__(self, client: Any, namespace: str, field_manager: str, takeover: float = TAKEOVER) -> None:
        self.client = client
        self.namespace = namespace
        self.field_manager = field_manager
        self.takeover = takeover

    def _path(self, schedule_id: str) -> str:
        return LEASE.item(self.namespace, lease_name(schedule_id))

    async def get(self, schedule_id: str) -> dict[str, Any] | None:
        """The schedule's Lease as stored, or None."""
        lease: dict[str, Any] | None = await self.client.get(self._path(schedule_id), resource=LEASE.plural)
        return lease

    async def read(self, schedule_id: str) -> Entry:
        """The schedule's entry as its Lease holds it."""
        return entry_from_lease(await self.get(schedule_id))

    async def update(self, schedule_id: str, change: Change) -> Any:
        """Step the schedule's entry by ``change`` and write it if it changed, only over the
        Lease it read; after a lost race, read and step again."""
        params = {"fieldManager": self.field_manager}
        for _ in range(ATTEMPTS):
            lease = await self.get(schedule_id)
            entry = entry_from_lease(lease)
            new, result = change(entry)
            if new == entry:
                return result
            body = lease_for(schedule_id, self.namespace, new, lease, self.takeover)
            try:
                if lease is None:
                    await self.client.request("POST", LEASE.collection(self.namespace), body=body, params=params,
                                              verb="create", resource=LEASE.plural)
                else:
                    await self.client.request("PUT", self._path(schedule_id), body=body, params=params,
                                              verb="update", resource=LEASE.plural)
            except Conflict:
                continue  # another replica wrote first (or created it first): step again from its write
            return result
        raise Unavailable(f"the Lease of schedule {schedule_id} kept changing; the next look tries again")
