"""The restart policy of local agents by itself: a clock of the test's own, no process."""

from __future__ import annotations

import dataclasses

from agentproxy.backends.local.restarts import RestartBackoff, conventional, exited, probe_interval
from agentproxy.settings.schema import SupervisionSettings

TIMING = SupervisionSettings(backoff_initial=1.0, backoff_max=8.0, stable_after=60.0, crash_loop_failures=5,
                             crash_loop_window=300.0, probe_interval_min=0.025, probe_fast_for=2.0,
                             probe_interval_max=0.25)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def runs(backoff: RestartBackoff, clock: Clock, lengths: list[float]) -> list[float | None]:
    """The delays after runs of these lengths, each started once the previous delay has passed."""
    delays: list[float | None] = []
    for length in lengths:
        backoff.started()
        clock.now += length
        delay = backoff.next_delay()
        delays.append(delay)
        clock.now += delay or 0
    return delays


def test_quick_failures_back_off_doubling_up_to_the_cap_then_give_up():
    clock = Clock()
    backoff = RestartBackoff(dataclasses.replace(TIMING, crash_loop_failures=6), clock)
    assert runs(backoff, clock, [1.0] * 6) == [1.0, 2.0, 4.0, 8.0, 8.0, None]
    assert backoff.recent_ends == 6


def test_five_ends_within_the_window_are_a_crash_loop():
    clock = Clock()
    backoff = RestartBackoff(TIMING, clock)
    assert runs(backoff, clock, [1.0] * 5) == [1.0, 2.0, 4.0, 8.0, None]


def test_a_stable_run_resets_the_delay_and_the_count():
    clock = Clock()
    backoff = RestartBackoff(TIMING, clock)
    assert runs(backoff, clock, [1.0, 1.0, 1.0]) == [1.0, 2.0, 4.0]
    assert runs(backoff, clock, [60.0]) == [1.0]  # lasted stable_after: starts over
    assert backoff.recent_ends == 1
    assert runs(backoff, clock, [1.0, 1.0, 1.0, 1.0]) == [2.0, 4.0, 8.0, None]


def test_ends_older_than_the_window_are_forgotten():
    clock = Clock()
    backoff = RestartBackoff(dataclasses.replace(TIMING, stable_after=1000.0, backoff_max=1.0), clock)
    assert runs(backoff, clock, [50.0, 50.0, 50.0, 50.0]) == [1.0, 1.0, 1.0, 1.0]
    # Runs of 50 s, 1 s apart: when this one ends, the first end is more than 300 s old.
    assert runs(backoff, clock, [150.0]) == [1.0]
    assert backoff.recent_ends < TIMING.crash_loop_failures


def test_an_adopted_run_counts_from_its_adoption():
    clock = Clock()
    backoff = RestartBackoff(TIMING, clock)
    clock.now += 10.0
    assert backoff.next_delay() == 1.0  # never started here: no stable run to reset
    backoff.started()
    clock.now += 61.0
    assert backoff.next_delay() == 1.0 and backoff.recent_ends == 1


def test_exit_codes_as_shells_show_them():
    assert conventional(-9) == 137 and conventional(3) == 3 and conventional(None) is None
    assert exited(0).reason == "Completed" and exited(1).reason == "Error"
    assert exited(-15).exit_code == 143 and exited(-15).description == "agentapi exited with code 143"
    assert exited(None).reason == "Exited" and exited(None).exit_code is None


def test_readiness_probes_are_frequent_first_then_slow_down_to_the_cap():
    assert probe_interval(0.025, 1.9, TIMING) == 0.025
    assert probe_interval(0.025, 2.0, TIMING) == 0.025 * 1.5
    assert probe_interval(0.2, 5.0, TIMING) == 0.25
