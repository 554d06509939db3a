"""What the triggers' tests share: the vendored GitHub payloads and GitHub's way of signing them, and
the Leases of a namespace for the schedules' claims."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter

from agentproxy.backends.base import Conflict, NotFound
from agentproxy.triggers.config import Schedule, parse_triggers

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "It's a Secret to Everybody"  # the secret of GitHub's own example of signature checking


def payload(name: str) -> bytes:
    """The bytes of one vendored payload as GitHub would send them (compact JSON)."""
    return json.dumps(json.loads((PAYLOADS / f"{name}.json").read_text()), separators=(",", ":")).encode()


def github_headers(event: str, body: bytes, secret: str = SECRET, delivery: str | None = None) -> dict[str, str]:
    """The headers GitHub sends with ``body``: event, delivery id and signature."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/test"}


def hook(**fields: Any) -> dict[str, Any]:
    """A hook's settings for issues labelled ``bug`` in the example repository."""
    base: dict[str, Any] = {
        "scheme": "github", "secret_env": "TEST_HOOK_SECRET", "owner": "alice", "agent": "echo",
        "match": {"events": ["issues", "pull_request"], "actions": ["opened"], "labels": ["bug"],
                  "repositories": ["Codertocat/Hello-World"]},
        "prompt": "Fix {{ repository.full_name }}#{{ issue.number }}: {{ issue.title }} (by {{ sender.login }})",
    }
    base.update(fields)
    return base


class LeaseServer:
    """The Leases of one namespace with the API server's rule of conditional writes, for the unit
    tier only: a create of a name that exists and a replace carrying a resourceVersion that is no
    longer the stored one are answered 409 (:class:`Conflict`). It stands in for the API server
    where a simulated day on a fake clock runs in a second and two replicas' writes must meet in
    the same instant on cue, which a real server cannot be made to do; the e2e suite runs the same
    code against a real one. Every call yields to the event loop first, so replicas looking
    together interleave between their read and their write."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.conflicts = 0
        self.writes = 0

    async def get(self, path: str, *, resource: str = "") -> dict[str, Any] | None:
        await asyncio.sleep(0)
        stored = self.objects.get(path)
        return copy.deepcopy(stored) if stored is not None else None

    async def request(self, method: str, path: str, *, body: Any = None, params: Any = None, verb: str = "",
                      resource: str = "", **_: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        if method == "POST":
            path = f"{path}/{body['metadata']['name']}"
            if path in self.objects:
                self.conflicts += 1
                raise Conflict(f"leases {body['metadata']['name']!r} already exists")
        elif method == "PUT":
            stored = self.objects.get(path)
            if stored is None:
                raise NotFound(path)
            if body["metadata"].get("resourceVersion") != stored["metadata"]["resourceVersion"]:
                self.conflicts += 1
                raise Conflict("the object has been modified; please apply your changes to the latest version")
        else:
            raise AssertionError(f"the schedules' Leases are never sent a {method}")
        self.version += 1
        self.writes += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[path] = stored
        return copy.deepcopy(stored)


DAY = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
"""The start of a simulated day: across its night Europe/Berlin moves its clocks forward."""


class _Section:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def schedules(**extra: Any) -> dict[str, Schedule]:
    """Three schedules for a simulated day (and ``extra`` ones): every quarter hour in UTC, 09:00
    and 02:30 in Berlin (02:30 does not exist there on the 29th)."""
    raw = {"quarter": {"cron": "*/15 * * * *", "prompt": "q {{ tick }}"},
           "berlin": {"cron": "0 9 * * *", "timezone": "Europe/Berlin", "prompt": "b"},
           "night": {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "prompt": "n"},
           **extra}
    return dict(parse_triggers(_Section(schedules=raw)).schedules)


class Clock:
    """A fake clock: ``now`` is what it says."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def expected(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """The schedule's ticks in ``(start, end]``, by croniter alone, in UTC."""
    it = croniter(schedule.cron, start.astimezone(ZoneInfo(schedule.timezone)))
    ticks = []
    while (tick := it.get_next(datetime)) <= end:
        ticks.append(tick.astimezone(UTC))
    return ticks


def assert_each_tick_fired_once(schedule: Schedule, fired: Mapping[tuple[str, datetime], int], start: datetime,
                                 end: datetime) -> list[datetime]:
    """Every tick of ``schedule`` in ``(start, end]`` fired exactly once and nothing else fired
    (``fired`` counts runs by (schedule id, tick)); the ticks."""
    ticks = expected(schedule, start, end)
    assert ticks, schedule.id
    for tick in ticks:
        assert fired[(schedule.id, tick)] == 1, (schedule.id, tick)
    assert sum(n for (sid, _), n in fired.items() if sid == schedule.id) == len(ticks)
    return ticks
