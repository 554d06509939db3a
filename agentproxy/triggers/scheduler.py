"""Runs the schedules: each tick fired by exactly one replica, none lost to a replica's death.

Every replica evaluates every schedule at each tick, but a tick is fired only by the replica
that *claims* it in the store (:func:`~.claims.claim_tick` decides, the store writes): the
replica whose write of the new last tick and its claim (replica, time) wins fires it; the claim
is marked done after the agent is made, and renewed while it is made. A claim neither done nor
renewed for ``takeover`` seconds (its replica died mid-tick) is fired again by the next replica
that looks: the agent's id is made from the schedule and the tick, so a second attempt of the
same tick finds the agent the first may have made (create is idempotent) rather than making
another.

Two stores, one contract (:class:`Store`): local mode keeps :class:`ClaimStore`, a JSON file
``<data dir>/triggers/schedules.json`` behind a ``flock`` of ``schedules.lock`` (every proxy
sharing the data directory shares it); k8s mode keeps one Lease per schedule in the agents'
namespace (:class:`~agentproxy.backends.k8s.leases.ScheduleLeases`), written by conditional
writes, so replicas that share no disk share the claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from .claims import TAKEOVER, Entry, claim_tick, entry_from_json, entry_to_json, finish, renew
from .config import Schedule
from .records import Recent
from .schedules import next_tick

log = logging.getLogger("agentproxy.triggers")

__all__ = ["RENEWALS", "RETRY", "TAKEOVER", "WAKE_MAX", "Change", "ClaimStore", "Fire", "Scheduler", "Store"]

WAKE_MAX = 300.0
"""The longest sleep of the scheduler between two looks."""

RETRY = 5.0
"""Seconds before a schedule whose store failed is looked at again."""

RENEWALS = 60
"""Renewals of one claim at most (20 minutes at the default pace): a run that takes longer is
taken over, and its second attempt finds the agent the first made."""

Change = Callable[[Entry], tuple[Entry, Any]]
"""A pure step of a schedule's entry: the entry to write and what the caller gets."""


class Store(Protocol):
    """Where the replicas' claims meet."""

    async def update(self, schedule_id: str, change: Change) -> Any:
        """Apply ``change`` to the schedule's entry atomically (no other replica's write between
        the read and the write) and return its second part."""

    async def read(self, schedule_id: str) -> Entry:
        """The schedule's entry as it is now."""


class ClaimStore:
    """The entry of each schedule in a JSON file behind a file lock (local mode)."""

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
                if not isinstance(data, dict):
                    data = {}
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    tmp = self.path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
                    os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    async def update(self, schedule_id: str, change: Change) -> Any:
        """See :meth:`Store.update` (the lock is held for a read and a write of a small file)."""
        with self.locked() as data:
            entry = entry_from_json(data.get(schedule_id))
            new, result = change(entry)
            if new != entry:
                data[schedule_id] = entry_to_json(new)
            return result

    async def read(self, schedule_id: str) -> Entry:
        """See :meth:`Store.read`."""
        with self.locked() as data:
            return entry_from_json(data.get(schedule_id))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


Fire = Callable[[Schedule, datetime], Awaitable[str]]
"""Makes the run of one tick: the result (``created``, ``skipped: ...``, ...)."""


class Scheduler:
    """One replica's view of the schedules."""

    def __init__(self, schedules: dict[str, Schedule], store: Store, fire: Fire, replica: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), recent: Recent | None = None,
                 takeover: float = TAKEOVER, renew_every: float | None = None) -> None:
        self.schedules = schedules
        self.store = store
        self.fire = fire
        self.replica = replica
        self.clock = clock
        self.recent = recent or Recent()
        self.takeover = takeover
        self.renew_every = takeover / 3 if renew_every is None else renew_every
        """Seconds between two renewals of a claim while its run is made."""
        self._wakes: dict[str, datetime] = {}
        """Looks due before the next tick: when an open claim becomes stale, a failed store is asked again."""

    async def run_due(self) -> list[tuple[str, datetime, str]]:
        """Fire every tick due now that this replica claims; what was fired and its result. A
        store that fails for one schedule is logged and asked again in ``RETRY`` seconds (a tick
        is on time for a minute), and the other schedules are looked at all the same."""
        fired = []
        self._wakes.clear()
        for schedule in self.schedules.values():
            try:
                tick = await self._claim(schedule)
            except Exception as exc:  # noqa: BLE001 - the API server or the disk; the next look tries again
                log.warning("schedule %s: the claims could not be read or written: %s", schedule.id, exc)
                self._wakes[schedule.id] = self.clock() + timedelta(seconds=RETRY)
                continue
            if tick is None:
                continue
            try:
                result = await self._fire_holding(schedule, tick)
            except Exception as exc:  # noqa: BLE001 - the claim stays open: another look fires it again
                log.warning("schedule %s: the run of %s failed: %s", schedule.id, _iso(tick), exc)
                self.recent.add("schedule", schedule.id, tick=_iso(tick), replica=self.replica,
                                result=f"failed: {exc}"[:300])
                self._wakes[schedule.id] = self.clock() + timedelta(seconds=self.takeover)
                continue
            try:
                await self._done(schedule, tick)
            except Exception as exc:  # noqa: BLE001 - the run is made; a takeover finds its agent
                log.warning("schedule %s: the run of %s could not be marked done: %s", schedule.id, _iso(tick), exc)
            self.recent.add("schedule", schedule.id, tick=_iso(tick), replica=self.replica, result=result)
            fired.append((schedule.id, tick, result))
        return fired

    async def _claim(self, schedule: Schedule) -> datetime | None:
        now = self.clock()

        def change(entry: Entry) -> tuple[Entry, datetime | None]:
            new, tick = claim_tick(schedule, entry, now, self.replica, self.takeover)
            claim = new.claim
            if tick is None and claim is not None and not claim.done:
                # Another replica's open claim: look again when it would be stale, not only at the
                # next tick (a daily schedule's run would wait for WAKE_MAX).
                self._wakes[schedule.id] = claim.at + timedelta(seconds=self.takeover)
            elif tick is not None and entry.claim is not None and not entry.claim.done:
                # An open claim taken over (or fired again): a tick that came while it was open is
                # decided at the next look, right after this run, while it may still be on time.
                self._wakes[schedule.id] = now
            else:
                self._wakes.pop(schedule.id, None)
            return new, tick

        tick: datetime | None = await self.store.update(schedule.id, change)
        return tick

    async def _fire_holding(self, schedule: Schedule, tick: datetime) -> str:
        """The run of ``tick``, its claim renewed while it is made."""
        renewing = asyncio.create_task(self._renew(schedule, tick))
        try:
            return await self.fire(schedule, tick)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew(self, schedule: Schedule, tick: datetime) -> None:
        """Renew the claim of ``tick`` every ``renew_every`` seconds (``RENEWALS`` times at most)."""
        for _ in range(RENEWALS):
            await asyncio.sleep(self.renew_every)
            try:
                await self.store.update(schedule.id, functools.partial(self._renewed, tick, self.clock()))
            except Exception as exc:  # noqa: BLE001 - the next renewal tries again; at worst the run is taken over
                log.warning("schedule %s: the claim of %s could not be renewed: %s", schedule.id, _iso(tick), exc)

    def _renewed(self, tick: datetime, now: datetime, entry: Entry) -> tuple[Entry, None]:
        return renew(entry, tick, self.replica, now), None

    async def _done(self, schedule: Schedule, tick: datetime) -> None:
        await self.store.update(schedule.id, lambda entry: (finish(entry, tick), None))

    def next_wake(self) -> datetime:
        """When a tick is next due (of any schedule), at the latest ``WAKE_MAX`` from now (a clock
        that jumped, a host that slept, is noticed then)."""
        now = self.clock()
        soonest = min([now + timedelta(seconds=WAKE_MAX), *self._wakes.values()])
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
