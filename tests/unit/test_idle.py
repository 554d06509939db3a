"""The rules of idle culling and of the age limit, without a backend or a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentproxy.backends.base import AgentState, AgentStatus
from agentproxy.backends.suspension import AgentActivity, Suspension, parse_time, timestamp
from agentproxy.idle import MAX_RESOLUTION, MIN_RESOLUTION, IdlePolicy

from ._support import spec_for

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def state(settings, status=AgentStatus.READY, *, age=3600.0, active=None, suspended=False) -> AgentState:
    return AgentState(spec=spec_for(settings), mode="test", status=status, created_at=T0 - timedelta(seconds=age),
                      last_active=None if active is None else T0 - timedelta(seconds=active), suspended=suspended)


def test_culling_is_off_unless_a_limit_is_set(settings):
    off = IdlePolicy()
    assert not off.enabled
    assert not off.idle(state(settings), T0) and not off.expired(state(settings, age=1e9), T0)
    assert settings.agents.idle_timeout is None and settings.agents.max_age is None
    assert settings.agents.resume_wait == 0


@pytest.mark.parametrize("idle_timeout, max_age, resolution", [
    (1800, None, MAX_RESOLUTION),      # a minute at most: one write per agent and minute
    (120, None, 30.0),                 # a quarter of the limit
    (None, 40, 10.0),
    (120, 20, 5.0),                    # of the shorter limit
    (1, None, MIN_RESOLUTION),         # half a second at least
])
def test_the_clock_is_a_quarter_of_the_shorter_limit_within_bounds(idle_timeout, max_age, resolution):
    assert IdlePolicy(idle_timeout, max_age).resolution == resolution


def test_an_agent_is_idle_when_ready_and_inactive_for_the_timeout(settings):
    policy = IdlePolicy(idle_timeout=600)
    assert policy.idle(state(settings, active=600), T0)
    assert not policy.idle(state(settings, active=599), T0)
    # Never active since its creation: counted from then.
    assert policy.idle(state(settings, age=600), T0) and not policy.idle(state(settings, age=10), T0)
    for status in (AgentStatus.PENDING, AgentStatus.STARTING, AgentStatus.FAILED, AgentStatus.STOPPING,
                   AgentStatus.STOPPED, AgentStatus.SUSPENDED):
        assert not policy.idle(state(settings, status, active=10_000), T0), status
    assert not policy.idle(state(settings, active=10_000, suspended=True), T0)


def test_its_own_api_can_show_an_idle_agent_active(settings):
    policy = IdlePolicy(idle_timeout=600)
    assert policy.active_at(AgentActivity(), T0) is None  # nothing known: the clock decides
    assert policy.active_at(AgentActivity("stable", T0 - timedelta(seconds=601)), T0) is None
    assert policy.active_at(AgentActivity("running", T0 - timedelta(days=1)), T0) == T0
    recent = T0 - timedelta(seconds=30)
    assert policy.active_at(AgentActivity("stable", recent), T0) == recent
    assert policy.active_at(AgentActivity(None, T0 + timedelta(seconds=5)), T0) == T0  # a clock ahead of ours


def test_agents_older_than_max_age_expire_unless_being_deleted(settings):
    policy = IdlePolicy(max_age=3600)
    assert policy.expired(state(settings, age=3600), T0) and not policy.expired(state(settings, age=3599), T0)
    assert policy.expired(state(settings, AgentStatus.SUSPENDED, age=7200, suspended=True), T0)
    assert policy.expired(state(settings, AgentStatus.FAILED, age=7200), T0)
    assert not policy.expired(state(settings, AgentStatus.STOPPING, age=7200), T0)
    assert policy.expired(state(settings, AgentStatus.STOPPING, age=7200, suspended=True), T0)  # suspending


def test_a_suspension_reads_back_and_an_unreadable_one_still_suspends():
    suspension = Suspension("idle", T0)
    assert Suspension.from_json(suspension.to_json()) == suspension
    assert Suspension.from_dict(suspension.to_dict()) == suspension
    assert suspension.to_json() == '{"at":"2026-03-01T12:00:00Z","cause":"idle"}'
    assert "suspended after being idle at 2026-03-01T12:00:00Z" in suspension.message()
    broken = Suspension.from_json("not json")
    assert broken.cause == "unknown" and broken.at.year == 1970
    assert parse_time(timestamp(T0)) == T0 and parse_time("yesterday") is None and parse_time(None) is None
    assert parse_time("2026-03-01T12:00:00.123456789Z") == T0 + timedelta(microseconds=123456)
