"""The real-node benchmark's table of start steps: each step's p50 and its share of
create-to-ready, over the starts that ended ready (the records are the backend's own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentproxy.backends.progress import K8S_PLAN, START, Fact, StartProgress
from benchmarks.real_node import step_shares

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def start(scheduled: float, ready: float, failed: bool = False) -> StartProgress:
    record = StartProgress("a", START, K8S_PLAN, at(0), has_first_message=False)
    record.observe({"applied": Fact(at(0)), "scheduled": Fact(at(scheduled))}, at(scheduled))
    record.finish("failed" if failed else "ready", "done", now=at(ready))
    return record


def test_shares_of_the_steps_of_the_starts_that_ended_ready():
    rows = step_shares([start(1, 4), start(3, 4), start(1, 9, failed=True), None])
    assert rows[0] == ("start steps of 2 agents", "p50 s / share of create-to-ready")
    assert rows[1:] == [("  applied", "0.00 s / 0 %"), ("  scheduled", "2.00 s / 50 %"), ("  ready", "2.00 s / 50 %")]
    assert step_shares([None]) == [("start steps", "no start ended ready")]
