"""Cron schedules, pure: which tick is due now, given the last one handled.

Expressions are read by `croniter <https://pypi.org/project/croniter/>`_ in the schedule's time
zone (IANA names, :mod:`zoneinfo`), so ``0 9 * * 1-5`` in ``Europe/Berlin`` fires at 09:00 Berlin
time across daylight-saving changes; every instant here is an aware datetime, compared in UTC.

:func:`decide` is the whole policy: given the last tick handled (``None`` for a schedule never
seen) and now, the tick to run, if any, and the new last tick. A schedule seen for the first
time runs from its next tick on. A tick at most ``grace`` seconds
old is on time and runs; older ticks were missed (the proxy was down), and the schedule's
``missed`` policy says whether the latest of them runs once (``run_once``) or none (``skip``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

GRACE = 60.0
"""Seconds a tick may be late and still count as on time."""


class CronError(ValueError):
    """A schedule's ``cron`` or ``timezone`` that cannot be used; ``field`` names which."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def zone_of(name: object) -> ZoneInfo:
    """The time zone ``name``, or :class:`CronError`."""
    if not isinstance(name, str) or not name:
        raise CronError("timezone", "must be an IANA time zone name such as UTC or Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError("timezone", f"{name!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)") from None


def cron_problem(expression: object, zone: object) -> str | None:
    """Why ``expression`` is not a usable cron expression (5 fields), or None; a bad ``zone`` is
    :class:`CronError`."""
    zone_of(zone)
    if not isinstance(expression, str) or len(expression.split()) != 5:
        return "must be a cron expression of 5 fields (minute hour day month weekday), e.g. '0 3 * * *'"
    if not croniter.is_valid(expression):
        return f"{expression!r} is not a valid cron expression"
    return None


def previous_tick(expression: str, zone: str, now: datetime) -> datetime:
    """The latest tick at or before ``now``."""
    local = now.astimezone(zone_of(zone))
    if croniter.match(expression, local.replace(second=0, microsecond=0)) and local.second == 0 \
            and local.microsecond == 0:
        return local
    return croniter(expression, local).get_prev(datetime)


def next_tick(expression: str, zone: str, after: datetime) -> datetime:
    """The first tick strictly after ``after``."""
    return croniter(expression, after.astimezone(zone_of(zone))).get_next(datetime)


@dataclass(frozen=True)
class Decision:
    """What to do now: run ``tick`` (None: nothing), then remember ``last``; ``missed`` ticks
    were passed over."""

    tick: datetime | None
    last: datetime
    missed: int = 0


def decide(expression: str, zone: str, missed_policy: str, last: datetime | None, now: datetime,
           grace: float = GRACE) -> Decision | None:
    """The decision at ``now`` for a schedule whose last handled tick is ``last``; None when
    nothing changed (no tick since ``last``)."""
    latest = previous_tick(expression, zone, now)
    if last is not None and latest <= last:
        return None
    if last is None:
        # A schedule seen for the first time starts from now: earlier ticks, even one a second ago,
        # were never its to run (a new schedule's first run is its first tick after it was set).
        return Decision(None, latest)
    on_time = (now - latest) <= timedelta(seconds=grace)
    missed = _count_between(expression, zone, last, latest) - (1 if on_time else 0)
    if on_time:
        return Decision(latest, latest, missed)
    return Decision(latest if missed_policy == "run_once" else None, latest, missed)


def _count_between(expression: str, zone: str, after: datetime, until: datetime, cap: int = 10_000) -> int:
    """Ticks in ``(after, until]``, counted up to ``cap``."""
    it = croniter(expression, after.astimezone(zone_of(zone)))
    count = 0
    while count < cap and it.get_next(datetime) <= until:
        count += 1
    return count
