"""The quota ledger's text: reservations of creates across replicas, expiring."""

from __future__ import annotations

from agentproxy.teams.quotas import RESERVATION_SECONDS, Reserved, dump_reservations, parse_reservations


def test_the_quota_ledgers_reservations_expire_and_unreadable_text_is_none():
    now = 1000.0
    kept = Reserved("a1", "alice", None, now - 1)
    old = Reserved("a2", "alice", "ml", now - RESERVATION_SECONDS - 1)
    assert parse_reservations(dump_reservations([kept, old]), now) == [kept]
    for text in (None, "", "{", "{}", '[{"id": 1}]', '[{"id": "x", "at": "soon"}]'):
        assert parse_reservations(text, now) == []
