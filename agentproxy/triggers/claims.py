"""The claims of schedule ticks, pure: which tick a replica fires, when an open claim is stale,
and what each store writes.

Every schedule has one :class:`Entry`: the last tick handled, the ticks missed so far, and the
open or done :class:`Claim` of the latest tick fired. A replica looking at a schedule reads the
entry, computes the next one with :func:`claim_tick` and writes it back only if the store still
holds what it read (under a file lock in local mode, by a write conditional on the Lease's
``resourceVersion`` in k8s mode); the tick :func:`claim_tick` returned is then that replica's to
fire. While the run is made, :func:`renew` keeps the claim fresh; after it, :func:`finish`
marks the claim done.

Two encodings of an entry: :func:`entry_to_json` / :func:`entry_from_json` (the local store's
``schedules.json``) and :func:`lease_for` / :func:`entry_from_lease` (a
``coordination.k8s.io/v1`` Lease per schedule, ``agentproxy-schedule-<id>``: the holder in
``spec.holderIdentity``, when it was claimed in ``spec.acquireTime`` and last renewed in
``spec.renewTime``, the window after which it is taken over in ``spec.leaseDurationSeconds``,
the rest in annotations).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .config import Schedule
from .schedules import decide

TAKEOVER = 60.0
"""Seconds after which another replica's claim left undone is fired again (its replica died
mid-tick, or its run failed)."""

LEASE_PREFIX = "agentproxy-schedule-"
LAST = "agentproxy.io/last-tick"
MISSED = "agentproxy.io/missed-ticks"
TICK = "agentproxy.io/tick"
DONE = "agentproxy.io/tick-done"


@dataclass(frozen=True)
class Claim:
    """Replica ``by`` fires ``tick`` since ``at``; ``done`` once the run was made."""

    tick: datetime
    by: str
    at: datetime
    done: bool = False


@dataclass(frozen=True)
class Entry:
    """What the store knows of one schedule (the empty entry: a schedule never seen)."""

    last: datetime | None = None
    missed: int = 0
    claim: Claim | None = None


def stale(claim: Claim, now: datetime, takeover: float = TAKEOVER) -> bool:
    """True when ``claim`` is open and older than ``takeover`` seconds: its run may be lost."""
    return not claim.done and now - claim.at >= timedelta(seconds=takeover)


def claim_tick(schedule: Schedule, entry: Entry, now: datetime, replica: str,
               takeover: float = TAKEOVER) -> tuple[Entry, datetime | None]:
    """The entry to write and the tick ``replica`` fires (None: none) when it looks at ``now``.

    An open claim of another replica is left alone until it is stale, then taken over (the tick
    is fired again: the agent's id is the tick's, so a run the first replica made is found, not
    made twice); an open claim of ``replica`` itself (its run failed) is fired again at once.
    Without an open claim, :func:`~.schedules.decide` says which tick is due, with the
    schedule's ``missed`` policy."""
    claim = entry.claim
    if claim is not None and not claim.done:
        if claim.by != replica and not stale(claim, now, takeover):
            return entry, None
        return dataclasses.replace(entry, claim=Claim(claim.tick, replica, now)), claim.tick
    decision = decide(schedule.cron, schedule.timezone, schedule.missed, entry.last, now)
    if decision is None:
        return entry, None
    entry = Entry(decision.last.astimezone(UTC), entry.missed + decision.missed, entry.claim)
    if decision.tick is None:
        return entry, None
    tick = decision.tick.astimezone(UTC)
    return dataclasses.replace(entry, claim=Claim(tick, replica, now)), tick


def renew(entry: Entry, tick: datetime, replica: str, now: datetime) -> Entry:
    """The entry with ``replica``'s open claim of ``tick`` renewed at ``now`` (a run that takes
    long is not taken over while its replica lives); unchanged when the claim is not that one
    (another replica took it over: it keeps it)."""
    claim = entry.claim
    if claim is None or claim.done or claim.tick != tick or claim.by != replica:
        return entry
    return dataclasses.replace(entry, claim=dataclasses.replace(claim, at=now))


def finish(entry: Entry, tick: datetime) -> Entry:
    """The entry once the run of ``tick`` was made (unchanged if the claim is of another tick)."""
    claim = entry.claim
    if claim is None or claim.tick != tick or claim.done:
        return entry
    return dataclasses.replace(entry, claim=dataclasses.replace(claim, done=True))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _moment(text: Any) -> datetime | None:
    """An aware instant from ISO 8601 text (``Z`` included), or None for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _count(text: Any) -> int:
    try:
        return max(0, int(text))
    except (TypeError, ValueError):
        return 0


def entry_to_json(entry: Entry) -> dict[str, Any]:
    """The entry as the local store keeps it."""
    out: dict[str, Any] = {}
    if entry.last is not None:
        out["last"] = _iso(entry.last)
    if entry.missed:
        out["missed"] = entry.missed
    if entry.claim is not None:
        claim = entry.claim
        out["claim"] = {"tick": _iso(claim.tick), "by": claim.by, "at": _iso(claim.at), "done": claim.done}
    return out


def entry_from_json(data: Any) -> Entry:
    """The entry of the local store's JSON (anything unreadable is the empty entry's part)."""
    if not isinstance(data, dict):
        return Entry()
    raw = data.get("claim")
    claim = None
    if isinstance(raw, dict):
        tick, at = _moment(raw.get("tick")), _moment(raw.get("at"))
        if tick is not None and at is not None:
            claim = Claim(tick, str(raw.get("by", "")), at, bool(raw.get("done")))
    return Entry(_moment(data.get("last")), _count(data.get("missed")), claim)


def lease_name(schedule_id: str) -> str:
    """The Lease of a schedule (schedule ids are short DNS labels: the name is one too)."""
    return LEASE_PREFIX + schedule_id


def _micro(moment: datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_from_lease(lease: dict[str, Any] | None) -> Entry:
    """The entry a schedule's Lease holds (None: no Lease yet, the empty entry)."""
    if not lease:
        return Entry()
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    spec = lease.get("spec") or {}
    claim = None
    tick, at = _moment(annotations.get(TICK)), _moment(spec.get("renewTime") or spec.get("acquireTime"))
    if tick is not None and at is not None:
        claim = Claim(tick, str(spec.get("holderIdentity") or ""), at, annotations.get(DONE) == "true")
    return Entry(_moment(annotations.get(LAST)), _count(annotations.get(MISSED)), claim)


def lease_for(schedule_id: str, namespace: str, entry: Entry, previous: dict[str, Any] | None,
              takeover: float = TAKEOVER) -> dict[str, Any]:
    """The Lease to write for ``entry``: a create when ``previous`` (the Lease read) is None, else
    a replacement of it conditional on the ``resourceVersion`` it was read at (a 409 then means
    another replica wrote first)."""
    meta = (previous or {}).get("metadata") or {}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in (LAST, MISSED, TICK, DONE)}
    if entry.last is not None:
        annotations[LAST] = _iso(entry.last)
    annotations[MISSED] = str(entry.missed)
    spec: dict[str, Any] = {"leaseDurationSeconds": max(1, round(takeover))}
    old_spec = (previous or {}).get("spec") or {}
    transitions = int(old_spec.get("leaseTransitions") or 0)
    claim = entry.claim
    if claim is not None:
        annotations[TICK] = _iso(claim.tick)
        annotations[DONE] = "true" if claim.done else "false"
        holder = old_spec.get("holderIdentity")
        if holder and holder != claim.by:
            transitions += 1
        # A renewal keeps the time the claim was made; a new claim or a takeover starts one.
        same = holder == claim.by and (meta.get("annotations") or {}).get(TICK) == _iso(claim.tick)
        acquired = old_spec.get("acquireTime") if same and old_spec.get("acquireTime") else _micro(claim.at)
        spec.update(holderIdentity=claim.by, acquireTime=acquired, renewTime=_micro(claim.at))
    spec["leaseTransitions"] = transitions
    metadata: dict[str, Any] = {
        # A replacement keeps what others put there (owner references, finalizers, ...).
        **{k: v for k, v in meta.items() if k != "managedFields"},
        "name": lease_name(schedule_id), "namespace": namespace,
        # Not labelled managed-by agentproxy: the agents' cache selects by that label.
        "labels": {**(meta.get("labels") or {}), "app.kubernetes.io/part-of": "agentproxy",
                   "app.kubernetes.io/component": "schedule-claim", "agentproxy.io/schedule": schedule_id},
        "annotations": annotations}
    if previous is None:
        metadata.pop("resourceVersion", None)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
