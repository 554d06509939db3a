"""Runs the schedules: each tick fired by exactly one replica, none lost to a replica's death.

Every replica evaluates every schedule at each tick (:func:`~.schedules.decide`), but a tick is
fired only by the replica that *claims* it in the :class:`ClaimStore`: under an exclusive lock
it reads the last tick handled, and writes the new one with a claim (replica, time) before
firing; the claim is marked done after the agent is made. A claim left undone for
``takeover`` seconds (its replica died mid-tick) is fired again by the next replica that looks:
the agent's id is made from the schedule and the tick, so a second attempt of the same tick
finds the agent the first may have made (create is idempotent) rather than making another.

Local mode keeps the store in ``<data dir>/triggers/schedules.json`` behind a ``flock`` of
``schedules.lock``: every proxy on the machine sharing the data directory shares it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .config import Schedule
from .records import Recent
from .schedules import decide, next_tick

log = logging.getLogger("agentproxy.triggers")

TAKEOVER = 60.0
"""Seconds after which an undone claim of another replica is fired again."""

WAKE_MAX = 300.0
"""The longest sleep of the scheduler between two looks."""


class ClaimStore:
    """The last tick and the open claim of each schedule, in a JSON file behind a file lock."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "schedules.json"
        self.lock_path = self.root / "schedules.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The store's content, held under the lock; what the body leaves in it is written back."""
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                except (FileNotFoundError, ValueError):
                    data = {}
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


Fire = Callable[[Schedule, datetime], Awaitable[str]]
"""Makes the run of one tick: the result (``created``, ``skipped: ...``, ...)."""


class Scheduler:
    """One replica's view of the schedules."""

    def __init__(self, schedules: dict[str, Schedule], store: ClaimStore, fire: Fire, replica: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), recent: Recent | None = None,
                 takeover: float = TAKEOVER) -> None:
        self.schedules = schedules
        self.store = store
        self.fire = fire
        self.replica = replica
        self.clock = clock
        self.recent = recent or Recent()
        self.takeover = takeover

    async def run_due(self) -> list[tuple[str, datetime, str]]:
        """Fire every tick due now that this replica claims; what was fired and its result."""
        fired = []
        for schedule in self.schedules.values():
            tick = self._claim(schedule)
            if tick is None:
                continue
            try:
                result = await self.fire(schedule, tick)
            except Exception as exc:  # noqa: BLE001 - the claim stays open: another look fires it again
                log.warning("schedule %s: the run of %s failed: %s", schedule.id, _iso(tick), exc)
                self.recent.add("schedule", schedule.id, tick=_iso(tick), replica=self.replica,
                                result=f"failed: {exc}"[:300])
                continue
            self._done(schedule, tick)
            self.recent.add("schedule", schedule.id, tick=_iso(tick), replica=self.replica, result=result)
            fired.append((schedule.id, tick, result))
        return fired

    def _claim(self, schedule: Schedule) -> datetime | None:
        now = self.clock()
        with self.store.locked() as data:
            entry = data.setdefault(schedule.id, {})
            claim = entry.get("claim")
            if claim and not claim.get("done"):
                # Another replica's claim (or this one's, after a failed run) left undone: its run may be lost.
                if now - datetime.fromisoformat(claim["at"]) < timedelta(seconds=self.takeover) \
                        and claim["by"] != self.replica:
                    return None
                entry["claim"] = {**claim, "by": self.replica, "at": _iso(now)}
                return datetime.fromisoformat(claim["tick"])
            decision = decide(schedule.cron, schedule.timezone, schedule.missed, _parse(entry.get("last")), now)
            if decision is None:
                return None
            entry["last"] = _iso(decision.last)
            if decision.missed:
                entry["missed"] = entry.get("missed", 0) + decision.missed
            if decision.tick is None:
                return None
            entry["claim"] = {"tick": _iso(decision.tick), "by": self.replica, "at": _iso(now), "done": False}
            return decision.tick.astimezone(UTC)

    def _done(self, schedule: Schedule, tick: datetime) -> None:
        with self.store.locked() as data:
            claim = data.get(schedule.id, {}).get("claim")
            if claim and claim["tick"] == _iso(tick):
                claim["done"] = True

    def next_wake(self) -> datetime:
        """When a tick is next due (of any schedule), at the latest ``WAKE_MAX`` from now (a clock
        that jumped, a host that slept, is noticed then)."""
        now = self.clock()
        soonest = now + timedelta(seconds=WAKE_MAX)
        for schedule in self.schedules.values():
            soonest = min(soonest, next_tick(schedule.cron, schedule.timezone, now).astimezone(UTC))
        return soonest

    async def run_forever(self) -> None:
        """Fire due ticks until cancelled (the proxy's background task)."""
        while True:
            try:
                await self.run_due()
            except Exception:  # noqa: BLE001 - a failing store must not end the schedules
                log.exception("schedules: a look at the due ticks failed")
            delay = (self.next_wake() - self.clock()).total_seconds()
            await asyncio.sleep(max(0.05, delay + 0.01))
