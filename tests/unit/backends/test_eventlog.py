"""Event ids and the replay window of ``GET /events``."""

from __future__ import annotations

from hypothesis import given, strategies as st

from agentproxy.backends.eventlog import EventLog, Position


def filled(log: EventLog, n: int, hints=None) -> list[str]:
    ids = []
    for i in range(n):
        position = log.next_position(hints[i] if hints else None)
        ids.append(log.id_of(position))
        log.keep(position, ids[-1])
    return ids


def test_sequence_ids_replay_what_was_missed_within_the_window():
    log: EventLog[str] = EventLog(capacity=5, epoch="abc")
    ids = filled(log, 3)
    assert ids == ["abc-1", "abc-2", "abc-3"]
    assert [e for _, e in log.since("abc-1")] == ["abc-2", "abc-3"]
    assert log.since("abc-3") == [] and log.since("abc-0") is not None  # from the first event of the run
    filled(log, 4)  # 7 events, 5 kept: 3..7
    assert [e for _, e in log.since("abc-2")] == ["abc-3", "abc-4", "abc-5", "abc-6", "abc-7"]
    assert log.since("abc-1") is None  # before the window: resync
    assert log.since("other-5") is None and log.since("abc-x") is None and log.since("") is None
    assert log.since("abc-99") == []  # ahead: nothing yet


def test_resource_version_ids_come_from_the_changes_and_stay_ordered():
    log: EventLog[str] = EventLog(capacity=100, epoch=None)
    log.known_from(100)
    ids = filled(log, 5, hints=[120, None, 110, 130, None])
    assert ids == ["120", "120.1", "120.2", "130", "130.1"]
    assert log.since("99") is None  # before this replica's watches began
    assert [e for _, e in log.since("100")] == ids
    assert [e for _, e in log.since("120.1")] == ["120.2", "130", "130.1"]
    assert [e for _, e in log.since("125")] == ["130", "130.1"]  # an id of another replica between two of ours


def test_a_replica_without_events_yet_cannot_serve_a_cursor():
    assert EventLog(epoch=None).since("5") is None


@given(st.lists(st.one_of(st.none(), st.integers(1, 10**9)), max_size=60), st.integers(1, 20))
def test_positions_always_grow_and_the_window_is_bounded(hints, capacity):
    log: EventLog[int] = EventLog(capacity=capacity, epoch=None)
    positions = []
    for i, hint in enumerate(hints):
        p = log.next_position(hint)
        log.keep(p, i)
        positions.append(p)
        assert log.parse(log.id_of(p)) == p
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert len(log) == min(len(hints), capacity)
    if len(hints) > capacity:
        oldest_kept = positions[-capacity]
        assert log.since(log.id_of(positions[-capacity - 1])) == [(p, i) for i, p in enumerate(positions)
                                                                  if p >= oldest_kept]
        assert log.since(log.id_of(Position(0, 0))) is None
