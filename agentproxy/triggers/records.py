"""The recent deliveries of every trigger, in and out, for ``GET /triggers/deliveries`` and the CLI,
and their counts for ``/metrics`` (``agentproxy_trigger_deliveries_total{kind, name, outcome}``)."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, Metric

KEEP = 500
"""Records kept (the oldest go first)."""


class Recent:
    """A bounded list of what happened to each delivery: inbound hooks, schedule ticks and
    notifications sent. Records never hold a secret or a payload: ids, statuses, results."""

    def __init__(self, keep: int = KEEP) -> None:
        self._items: deque[dict[str, Any]] = deque(maxlen=keep)
        self.counts: Counter[tuple[str, str, str]] = Counter()
        """Deliveries by kind, trigger name and outcome, since the start."""

    def add(self, kind: str, name: str, **facts: Any) -> dict[str, Any]:
        """Note one delivery of ``kind`` (``hook``, ``schedule``, ``notification``) of trigger ``name``."""
        record = {"at": round(time.time(), 3), "kind": kind, "name": name, **facts}
        # The outcome as /metrics counts it, so that listings read it rather than work it out again.
        record["outcome"] = outcome(record)
        self._items.append(record)
        self.counts[(kind, name, record["outcome"])] += 1
        return record

    def list(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest first."""
        items = [r for r in reversed(self._items) if kind is None or r["kind"] == kind]
        return items[:limit]


def outcome(record: dict[str, Any]) -> str:
    """A delivery's outcome as a small set of words: a hook's HTTP status, ``delivered`` or ``dead``
    for a notification, ``created``, ``skipped`` or ``failed`` for a schedule's tick."""
    if record["kind"] == "hook":
        return str(record.get("status"))
    if record["kind"] == "notification":
        return "dead" if record.get("dead") else "delivered"
    return str(record.get("result", "")).split(" ", 1)[0].rstrip(":") or "unknown"


class RecentCollector:
    """The counts of a :class:`Recent` as a Prometheus counter family, built when scraped."""

    def __init__(self, recent: Recent) -> None:
        self.recent = recent

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("agentproxy_trigger_deliveries",
                                     "Deliveries of triggers: hooks in (by HTTP status), schedule ticks (created, "
                                     "skipped, failed) and notifications out (delivered, dead).",
                                     labels=["kind", "name", "outcome"])
        for (kind, name, result), count in sorted(self.recent.counts.items()):
            family.add_metric([kind, name, result], count)
        yield family
