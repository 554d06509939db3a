"""The index by session and owner (what a list costs), and the per-agent JSON of the list
routes, made again only for an agent whose state changed."""

from __future__ import annotations

import gc
import json
import weakref
from datetime import UTC, datetime

from agentproxy.api.listing import AgentTexts
from agentproxy.api.model import agent_json
from agentproxy.backends.base import AgentState, AgentStatus
from agentproxy.backends.index import ANY_OWNER, Membership, StateIndex

from .._support import spec_for

WHEN = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def state(settings, agent_id: str, session: str = "s1", owner: str | None = None,
          status: AgentStatus = AgentStatus.PENDING) -> AgentState:
    return AgentState(spec=spec_for(settings, agent_id, session, owner=owner), mode="k8s", status=status,
                      created_at=WHEN, details={"pod_ip": None, "node": "n1"})


def _same(parts: list[bytes], others: list[bytes]) -> bool:
    """The very same parts (not made again)."""
    return len(parts) == len(others) and all(a is b for a, b in zip(parts, others, strict=True))


def test_membership_follows_adds_moves_and_removals(settings):
    members = Membership()
    members.add(spec_for(settings, "a1", "s1", owner="alice"))
    members.add(spec_for(settings, "a2", "s1", owner="bob"))
    members.add(spec_for(settings, "b1", "s2", owner="alice"))
    members.add(spec_for(settings, "c1", "s3"))
    assert sorted(members.ids()) == ["a1", "a2", "b1", "c1"]
    assert sorted(members.ids("s1")) == ["a1", "a2"]
    assert sorted(members.ids(owner="alice")) == ["a1", "b1"]
    assert sorted(members.ids("s1", "alice")) == ["a1"]
    assert sorted(members.ids(owner=None)) == ["c1"]  # None is an owner: agents made without keys
    assert list(members.ids("nobody")) == [] and list(members.ids(owner="carol")) == []
    assert (members.count_session("s1"), members.count_owner("alice"), members.count_owner(None)) == (2, 2, 1)

    members.add(spec_for(settings, "a1", "s2", owner="bob"))  # the same id again elsewhere: moved
    assert sorted(members.ids("s1")) == ["a2"] and sorted(members.ids("s2")) == ["a1", "b1"]
    assert sorted(members.ids(owner="alice")) == ["b1"]
    members.discard("a2")
    members.discard("a2")  # twice changes nothing
    assert list(members.ids("s1")) == [] and members.count_session("s1") == 0
    assert "a2" not in members and len(members) == 3
    members.discard("nobody")
    assert sorted(members.ids(owner=ANY_OWNER)) == ["a1", "b1", "c1"]


def test_state_index_keeps_each_agents_latest_state(settings):
    index = StateIndex()
    first = state(settings, "a1")
    index.put(first)
    index.put(state(settings, "b1", "s2"))
    ready = state(settings, "a1", status=AgentStatus.READY)
    index.put(ready)  # modified
    assert index.get("a1") is ready
    assert [s.status for s in index.states("s1")] == [AgentStatus.READY]
    assert sorted(s.id for s in index.states()) == ["a1", "b1"]
    index.remove("a1")  # deleted
    assert index.get("a1") is None and index.states("s1") == [] and "a1" not in index
    assert [s.id for s in index.specs()] == ["b1"]


def test_agent_texts_are_json_dumps_of_agent_json_and_remade_only_for_a_new_state(settings):
    texts = AgentTexts()
    one, two = state(settings, "a1", owner="alice"), state(settings, "b1", "s2")
    body = texts.list_body([one, two])
    assert body == json.dumps({"agents": [agent_json(one), agent_json(two)]}).encode()
    assert texts.list_body([]) == json.dumps({"agents": []}).encode()
    cached = texts.text(one)
    assert texts.text(one) is cached  # the same state: the same bytes, not made again
    changed = state(settings, "a1", owner="alice", status=AgentStatus.READY)
    assert json.loads(texts.text(changed))["status"] == "ready"  # a new state object: made again
    equal_but_new = state(settings, "a1", owner="alice", status=AgentStatus.READY)
    assert texts.text(equal_but_new) == texts.text(changed)


def test_agent_texts_drop_agents_gone_from_a_complete_list_and_stay_bounded(settings):
    texts = AgentTexts(max_entries=3)
    states = [state(settings, f"a{i}") for i in range(3)]
    texts.list_body(states, complete=True)
    assert len(texts) == 3
    texts.list_body(states[:1], complete=True)  # the others were deleted
    assert len(texts) == 1
    texts.list_body(states[1:2])  # a partial list drops nothing
    assert len(texts) == 2
    texts.list_body([state(settings, f"b{i}") for i in range(3)])
    assert len(texts) <= 3


def test_agent_texts_keep_no_state_alive_and_never_serve_a_gone_one(settings):
    texts = AgentTexts()
    old = [state(settings, f"a{i}") for i in range(3)]
    texts.list_body(old, complete=True)
    gone = weakref.ref(old[0])
    new = [state(settings, "a0", status=AgentStatus.READY), *old[1:]]
    del old
    gc.collect()
    assert gone() is None  # the agent changed: its previous state is not kept for the cache's sake
    body = json.loads(texts.list_body(new, complete=True))  # not the last complete body
    assert [a["status"] for a in body["agents"]] == ["ready", "pending", "pending"]
    assert _same(texts.list_parts(new, complete=True), texts.list_parts(new, complete=True))


def test_state_index_keeps_list_order_across_adds_changes_and_removals(settings):
    index = StateIndex()
    later = state(settings, "a0")
    later = AgentState(spec=later.spec, mode="k8s", status=AgentStatus.PENDING, created_at=WHEN.replace(hour=9))
    for agent in (state(settings, "b2"), later, state(settings, "b1")):
        index.put(agent)
    assert [s.id for s in index.ordered()] == ["b1", "b2", "a0"]  # creation time, then id
    ready = state(settings, "b2", status=AgentStatus.READY)
    index.put(ready)  # a change in place keeps the order and shows the new state
    assert index.ordered()[1] is ready
    index.put(state(settings, "a9"))  # a new agent
    assert [s.id for s in index.ordered()] == ["a9", "b1", "b2", "a0"]
    index.put(AgentState(spec=later.spec, mode="k8s", status=AgentStatus.PENDING, created_at=WHEN))
    assert [s.id for s in index.ordered()] == ["a0", "a9", "b1", "b2"]  # its creation time changed
    index.remove("a9")
    index.remove("a9")
    assert [s.id for s in index.ordered()] == ["a0", "b1", "b2"]


def test_a_complete_list_of_the_same_states_is_the_same_body_and_any_change_makes_a_new_one(settings):
    texts = AgentTexts()
    states = [state(settings, f"a{i}") for i in range(3)]
    parts = texts.list_parts(states, complete=True)
    assert _same(texts.list_parts(list(states), complete=True), parts)  # nothing changed: not joined again
    changed = [states[0], state(settings, "a1", status=AgentStatus.READY), states[2]]
    new = texts.list_body(changed, complete=True)
    assert [a["status"] for a in json.loads(new)["agents"]] == ["pending", "ready", "pending"]
    assert json.loads(texts.list_body(changed[:2], complete=True))["agents"][-1]["id"] == "a1"  # one deleted
    assert texts.list_body(changed[:2]) == texts.list_body(changed[:2], complete=True)
    assert texts.list_body(changed[::-1], complete=True) == json.dumps(
        {"agents": [agent_json(s) for s in changed[::-1]]}).encode()  # another order


def test_a_complete_list_makes_again_only_the_texts_of_agents_that_changed_or_moved(settings, monkeypatch):
    import agentproxy.api.listing as listing
    made: list[str] = []

    def counted(state: AgentState) -> dict:
        made.append(state.id)
        return agent_json(state)
    monkeypatch.setattr(listing, "agent_json", counted)
    texts = AgentTexts()
    states = [state(settings, f"a{i}") for i in range(5)]
    texts.list_body(states, complete=True)
    assert made == ["a0", "a1", "a2", "a3", "a4"]
    made.clear()
    states[3] = state(settings, "a3", status=AgentStatus.READY)
    body = texts.list_body(states, complete=True)
    assert made == ["a3"]  # the others' texts are the last list's, by position
    assert body == json.dumps({"agents": [agent_json(s) for s in states]}).encode()
    made.clear()
    # One deleted and another created: the same length, the agents after it moved up a place.
    moved = [*states[:1], *states[2:], state(settings, "a9")]
    assert texts.list_body(moved, complete=True) == json.dumps({"agents": [agent_json(s) for s in moved]}).encode()
    assert made == ["a9"]  # a moved agent's text comes from its own entry, made once
    assert _same(texts.list_parts(list(moved), complete=True), texts.list_parts(moved, complete=True))


def test_a_change_in_place_replaces_the_agents_entry_in_the_ordered_list(settings):
    index = StateIndex()
    for i in range(4):
        index.put(state(settings, f"a{i}"))
    first = index.ordered()
    ready = state(settings, "a2", status=AgentStatus.READY)
    index.put(ready)
    after = index.ordered()
    assert after[2] is ready and [s.id for s in after] == ["a0", "a1", "a2", "a3"]
    assert first[2] is not ready  # a list handed out before is the caller's: not changed under it
    index.remove("a1")
    index.put(state(settings, "a3", status=AgentStatus.READY))
    index.put(state(settings, "a1"))  # back, and the positions after it follow
    assert [s.id for s in index.ordered()] == ["a0", "a1", "a2", "a3"]
    again = state(settings, "a3", status=AgentStatus.FAILED)
    index.put(again)
    assert [s.id for s in index.ordered()] == ["a0", "a1", "a2", "a3"] and index.ordered()[3] is again


def test_a_complete_list_in_parts_is_the_body_at_every_size_and_rejoins_only_the_changed_parts(settings):
    from agentproxy.api.listing import SEGMENT
    for count in (0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 2 * SEGMENT + 3):
        texts = AgentTexts()
        states = [state(settings, f"a{i}") for i in range(count)]
        parts = texts.list_parts(states, complete=True)
        assert len(parts) == max(1, -(-count // SEGMENT))
        assert b"".join(parts) == json.dumps({"agents": [agent_json(s) for s in states]}).encode(), count
        assert b"".join(texts.list_parts(states)) == b"".join(parts)  # not complete: joined afresh
        if count > SEGMENT:
            states[SEGMENT] = state(settings, f"a{SEGMENT}", status=AgentStatus.READY)
            again = texts.list_parts(states, complete=True)
            assert [a is b for a, b in zip(parts, again, strict=True)][:2] == [True, False]  # the first kept
            assert b"".join(again) == json.dumps({"agents": [agent_json(s) for s in states]}).encode()
            assert parts[1] is not again[1] and b"ready" not in parts[1]  # the list handed out before is unchanged
