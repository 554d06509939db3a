"""The quota ledger of k8s mode: the creates every replica let through in the last moments, in
one ConfigMap (``agentproxy-quota-ledger``), each added by a write conditional on the
ConfigMap's resourceVersion.

A replica's quota check counts the agents its cache shows; an agent another replica created a
moment ago may not be there yet. So each create, once its check passed, is written to the
ledger with the resourceVersion the check read: when two replicas check at the same instant,
the second write fails (409), and that replica reads the ledger again and checks again with the
first one's create counted, and refuses when that breaks a quota. A reservation counts while its
agent is not among a replica's agents; it goes when its create fails, when its agent is deleted,
or after :data:`~agentproxy.teams.quotas.RESERVATION_SECONDS` (by then the agent is in every
cache). A create served by a warm pool becomes the agent of its member's id: its reservation is
moved to that id the moment the claim is written (:meth:`QuotaLedger.rename`), so that the agent
counts once, whether a replica's cache shows it yet or not.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from ...spec import AgentSpec
from ...teams.quotas import Reserved, dump_reservations, parse_reservations
from ..errors import Conflict, Unavailable
from .kinds import CONFIGMAP

LEDGER_NAME = "agentproxy-quota-ledger"
KEY = "reservations"
ATTEMPTS = 20


class QuotaLedger:
    """Reservations of creates in the ledger ConfigMap of one namespace."""

    def __init__(self, client: Any, namespace: str, field_manager: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.namespace = namespace
        self.field_manager = field_manager
        self.clock = clock

    @property
    def _path(self) -> str:
        return CONFIGMAP.item(self.namespace, LEDGER_NAME)

    async def _read(self, make: bool = True) -> tuple[list[Reserved], str]:
        """The live reservations and the resourceVersion they were read at (made when missing,
        unless not ``make``: then none, at no version)."""
        for _ in range(3):
            live = await self.client.get(self._path, resource="configmaps")
            if live is not None:
                return (parse_reservations((live.get("data") or {}).get(KEY), self.clock()),
                        str(live["metadata"]["resourceVersion"]))
            if not make:
                return [], ""
            try:
                await self.client.request("POST", CONFIGMAP.collection(self.namespace), body={
                    "apiVersion": "v1", "kind": "ConfigMap",
                    # Not labelled managed-by agentproxy: the agents' cache and their claims'
                    # clean-up select by that label, and this is no agent's claim.
                    "metadata": {"name": LEDGER_NAME, "namespace": self.namespace,
                                 "labels": {"app.kubernetes.io/part-of": "agentproxy",
                                            "app.kubernetes.io/component": "quota-ledger"}},
                    "data": {KEY: "[]"}}, params={"fieldManager": self.field_manager}, verb="create",
                    resource="configmaps")
            except Conflict:
                pass  # another replica made it: read it
        raise Unavailable("the quota ledger could not be read; try again")

    async def _write(self, reservations: list[Reserved], version: str) -> bool:
        """Replace the reservations if the ledger is still at ``version``; False when it is not."""
        patch = {"metadata": {"resourceVersion": version}, "data": {KEY: dump_reservations(reservations)}}
        try:
            await self.client.request("PATCH", self._path, body=patch, content_type="application/merge-patch+json",
                                      params={"fieldManager": self.field_manager}, verb="patch",
                                      resource="configmaps")
        except Conflict:
            return False
        return True

    async def reserve(self, spec: AgentSpec, check: Callable[[list[Reserved]], None]) -> None:
        """Add ``spec``'s create once ``check`` passes with every live reservation counted (it
        raises to refuse); read and check again after each lost race."""
        for _ in range(ATTEMPTS):
            reservations, version = await self._read()
            others = [r for r in reservations if r.id != spec.id]
            check(others)
            mine = Reserved(spec.id, spec.owner, spec.group, self.clock())
            if await self._write([*others, mine], version):
                return
        raise Unavailable("the quota ledger kept changing; try again")

    async def release(self, agent_id: str) -> None:
        """Remove the reservation of a create that made nothing, or of an agent deleted (else it
        would count again, its agent gone from every cache, until it expires)."""
        for _ in range(ATTEMPTS):
            reservations, version = await self._read(make=False)
            kept = [r for r in reservations if r.id != agent_id]
            if len(kept) == len(reservations) or await self._write(kept, version):
                return

    async def rename(self, old: str, new: str) -> None:
        """The create reserved as ``old`` became the agent ``new`` (a pool member it claimed): its
        reservation names ``new`` from now on, at its first time. Under ``old`` it would count
        as one more create until it expired, besides the agent every cache shows."""
        for _ in range(ATTEMPTS):
            reservations, version = await self._read(make=False)
            if not any(r.id == old for r in reservations):
                return  # expired or released: nothing counts twice
            moved = [dataclasses.replace(r, id=new) if r.id == old else r for r in reservations if r.id != new]
            if await self._write(moved, version):
                return
        raise Unavailable("the quota ledger kept changing; try again")
