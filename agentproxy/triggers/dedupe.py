"""Delivery ids seen before: a redelivered event is answered and ignored, also after a restart.

A delivery is *claimed* while it is handled (a second copy arriving meanwhile is a duplicate),
then either *kept* (handled: its id is appended to the hook's file, one id a line, so a proxy
started again knows it) or *released* (it failed before anything was made: the sender may try
again). Each hook's file keeps the last :data:`KEEP` ids; older ones are dropped when the file
is compacted at start.

In k8s mode (several replicas, no shared disk) a :class:`SharedDeliveries` is asked too, once
this replica's own log finds the id new: one small Lease per delivery id in the agents'
namespace, created conditionally, so that two replicas given the same delivery agree on which
handles it (:mod:`agentproxy.backends.k8s.deliveries`). The agent's id, made from the delivery
id, still keeps a duplicate from making a second agent once the shared record is swept (see
:func:`~agentproxy.triggers.matching.agent_id_for`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

KEEP = 100_000
"""Delivery ids remembered per hook."""

MAX_ID = 200
"""Longer delivery ids are cut (GitHub's are 36-character UUIDs)."""


class DeliveryLog:
    """The delivery ids of every hook, under ``root`` (``None``: in memory only)."""

    def __init__(self, root: str | os.PathLike[str] | None, keep: int = KEEP) -> None:
        self.root = Path(root) if root is not None else None
        self.keep = keep
        self._seen: dict[str, OrderedDict[str, None]] = {}
        self._claimed: set[tuple[str, str]] = set()

    def _file(self, hook: str) -> Path | None:
        return self.root / f"{hook}.ids" if self.root is not None else None

    def _ids(self, hook: str) -> OrderedDict[str, None]:
        seen = self._seen.get(hook)
        if seen is None:
            seen = OrderedDict()
            path = self._file(hook)
            if path is not None and path.exists():
                for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[-self.keep:]:
                    if line:
                        seen[line] = None
                self._compact(hook, seen)
            self._seen[hook] = seen
        return seen

    def _compact(self, hook: str, seen: OrderedDict[str, None]) -> None:
        path = self._file(hook)
        if path is None:
            return
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{i}\n" for i in seen), encoding="utf-8")
        os.replace(tmp, path)

    @staticmethod
    def normal(delivery: str) -> str:
        """The id as kept: one line, bounded."""
        return delivery.replace("\n", " ").replace("\r", " ")[:MAX_ID]

    def claim(self, hook: str, delivery: str) -> bool:
        """True when ``delivery`` is new for ``hook`` and is now being handled; False for a
        duplicate (handled before, or being handled)."""
        delivery = self.normal(delivery)
        if delivery in self._ids(hook) or (hook, delivery) in self._claimed:
            return False
        self._claimed.add((hook, delivery))
        return True

    def keep_id(self, hook: str, delivery: str) -> None:
        """The claimed delivery was handled: remember it for good."""
        delivery = self.normal(delivery)
        self._claimed.discard((hook, delivery))
        seen = self._ids(hook)
        seen[delivery] = None
        path = self._file(hook)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as out:
                out.write(delivery + "\n")
        if len(seen) > self.keep:
            while len(seen) > self.keep:
                seen.popitem(last=False)
            self._compact(hook, seen)

    def release(self, hook: str, delivery: str) -> None:
        """The claimed delivery failed before anything was made: a retry is welcome."""
        self._claimed.discard((hook, self.normal(delivery)))


class SharedDeliveries(Protocol):
    """Delivery ids every replica shares (k8s mode): claimed by one replica at a time."""

    async def claim(self, hook: str, delivery: str) -> bool:
        """True when this replica handles ``delivery`` now; False when another handled it, or
        handles it now."""

    async def keep(self, hook: str, delivery: str) -> None:
        """The claimed delivery was handled: a redelivery to any replica is a duplicate."""

    async def release(self, hook: str, delivery: str) -> None:
        """The claimed delivery failed before anything was made: any replica may take a retry."""
