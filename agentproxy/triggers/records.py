"""The recent deliveries of every trigger, in and out, for ``GET /triggers/deliveries`` and the CLI."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

KEEP = 500
"""Records kept (the oldest go first)."""


class Recent:
    """A bounded list of what happened to each delivery: inbound hooks, schedule ticks and
    notifications sent. Records never hold a secret or a payload: ids, statuses, results."""

    def __init__(self, keep: int = KEEP) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)

    def add(self, kind: str, name: str, **facts: Any) -> dict[str, Any]:
        """Note one delivery of ``kind`` (``hook``, ``schedule``, ``notification``) of trigger ``name``."""
        record = {"at": round(time.time(), 3), "kind": kind, "name": name, **facts}
        self._items.append(record)
        return record

    def list(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest first."""
        items = [r for r in reversed(self._items) if kind is None or r["kind"] == kind]
        return items[:limit]
