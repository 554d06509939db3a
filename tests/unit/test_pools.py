"""Warm pools, the pure part: the settings' rules, shapes, the claim decision, refill plans."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from agentproxy.pools import (
    COLD,
    FAILED,
    READY,
    STALE,
    WARM,
    WARMING,
    Member,
    Pool,
    PoolsError,
    counts,
    decide,
    member_labels,
    parse_pools,
    refill_plan,
    shape_of,
)

from ._support import assert_message, settings_error, settings_with

TYPES = ("echo", "claude")


def parse(raw, profiles=()):
    return parse_pools(raw, TYPES, "echo", profiles)


def test_no_pools():
    assert parse(None) == ()
    assert parse([]) == ()


def test_a_pool_with_defaults():
    assert parse([{"name": "echo", "size": 5}]) == (Pool("echo", 5, "echo"),)
    assert parse([{"name": "big", "size": 0, "agent": "claude", "resources": {"memory_limit": "2Gi", "cpu_limit": 2},
                   "profile": "ml"}], profiles=["ml"]) == (
        Pool("big", 0, "claude", {"memory_limit": "2Gi", "cpu_limit": "2"}, "ml"),)


@pytest.mark.parametrize("raw, path, rule", [
    ({"name": "x"}, "pools", "must be a list"),
    (["x"], "pools.0", "must be a mapping"),
    ([{"name": "x", "size": 1, "colour": "red"}], "pools.0.colour", "unknown field"),
    ([{"size": 1}], "pools.0.name", "lowercase letters"),
    ([{"name": "Echo", "size": 1}], "pools.0.name", "lowercase letters"),
    ([{"name": "x" * 31, "size": 1}], "pools.0.name", "1 to 30"),
    ([{"name": "a", "size": 1}, {"name": "a", "size": 2}], "pools.1.name", "unique"),
    ([{"name": "a"}], "pools.0.size", "whole number from 0 to 100"),
    ([{"name": "a", "size": -1}], "pools.0.size", "whole number"),
    ([{"name": "a", "size": 101}], "pools.0.size", "whole number"),
    ([{"name": "a", "size": True}], "pools.0.size", "whole number"),
    ([{"name": "a", "size": "5"}], "pools.0.size", "whole number"),
    ([{"name": "a", "size": 1, "agent": "codex"}], "pools.0.agent", "claude, echo"),
    ([{"name": "a", "size": 1, "resources": "big"}], "pools.0.resources", "mapping"),
    ([{"name": "a", "size": 1, "resources": {"gpu": 1}}], "pools.0.resources.gpu", "not a resource"),
    ([{"name": "a", "size": 1, "resources": {"cpu_limit": "lots"}}], "pools.0.resources.cpu_limit", "quantity"),
    ([{"name": "a", "size": 1, "resources": {"cpu_limit": 0}}], "pools.0.resources.cpu_limit", "positive"),
    ([{"name": "a", "size": 1, "profile": "ml"}], "pools.0.profile", "none configured"),
    ([{"name": "a", "size": 1, "prestart": "yes"}], "pools.0.prestart", "true or false"),
])
def test_bad_pools_name_the_field_and_the_rule(raw, path, rule):
    with pytest.raises(PoolsError) as info:
        parse(raw)
    assert info.value.path == path
    assert rule in info.value.rule


def test_settings_refuse_a_bad_pool_naming_the_field():
    err = settings_error("pools=[{name: echo, size: 500}]")
    assert_message(err, "pools.0.size", "whole number from 0 to 100")
    err = settings_error(environ={"AGENTAPI_POOLS": "[{name: echo, size: 1, agent: nope}]"})
    assert_message(err, "pools.0.agent", "environment variable AGENTAPI_POOLS")


def test_settings_refuse_a_pool_beyond_the_configured_resources():
    err = settings_error("pools=[{name: big, size: 1, resources: {memory_limit: 64Gi}}]")
    assert_message(err, "pools.0.resources.memory_limit", "must not exceed the configured k8s_mode.resources.memory_limit")


def test_a_pool_may_prestart_its_members():
    assert parse([{"name": "echo", "size": 1, "prestart": True}]) == (Pool("echo", 1, "echo", prestart=True),)
    assert parse([{"name": "c", "size": 1, "agent": "claude"}])[0].prestart is False
    assert parse([{"name": "c", "size": 1, "agent": "claude", "prestart": True}])[0].prestart is True


def test_a_prestarted_pool_serves_the_creates_of_its_shape_with_members_of_another():
    from agentproxy.backends.pooling import configured_pools, pool_shapes
    plain = configured_pools(settings_with("pools=[{name: echo, size: 1, agent: echo}]"))[0]
    early = configured_pools(settings_with("pools=[{name: echo, size: 1, agent: echo, prestart: true}]"))[0]
    assert early.create_shape == plain.shape == plain.create_shape
    assert early.shape != plain.shape  # its members run otherwise: old ones are replaced
    assert pool_shapes((early,)) == {"echo": plain.shape}


def test_settings_accept_pools_from_a_file(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("pools:\n  - name: echo\n    size: 3\n")
    from ._support import load
    settings = load(config_file=path).settings
    assert parse_pools(settings.pools, settings.agents.commands, settings.agents.default_type) == (
        Pool("echo", 3, "echo"),)
    assert settings_with().pools is None


def test_shape_changes_with_what_makes_a_member():
    base = shape_of("echo", ["python3", "-m", "x"], {"cpu_limit": "1"}, None)
    assert base == shape_of("echo", ("python3", "-m", "x"), {"cpu_limit": "1"}, None)
    assert base != shape_of("claude", ["python3", "-m", "x"], {"cpu_limit": "1"}, None)
    assert base != shape_of("echo", ["python3", "-m", "y"], {"cpu_limit": "1"}, None)
    assert base != shape_of("echo", ["python3", "-m", "x"], {"cpu_limit": "2"}, None)
    assert base != shape_of("echo", ["python3", "-m", "x"], {"cpu_limit": "1"}, "ml")
    assert member_labels("echo", base) == {"agentproxy.io/pool": "echo", "agentproxy.io/pool-shape": base}


SHAPES = {"echo": "s-echo", "claude": "s-claude"}


def test_a_create_naming_an_id_is_cold():
    decision = decide(names_id=True, shape="s-echo", pool_shapes=SHAPES, ready={"echo": 5})
    assert (decision.start, decision.pool) == (COLD, None)
    assert "names an id" in decision.why


def test_a_create_of_no_pools_shape_is_cold():
    decision = decide(names_id=False, shape="s-other", pool_shapes=SHAPES, ready={"echo": 5})
    assert (decision.start, decision.pool) == (COLD, None)


def test_an_empty_pool_serves_cold():
    decision = decide(names_id=False, shape="s-echo", pool_shapes=SHAPES, ready={"echo": 0, "claude": 3})
    assert (decision.start, decision.pool) == (COLD, "echo")
    assert "no ready member" in decision.why


def test_a_matching_create_is_warm():
    decision = decide(names_id=False, shape="s-claude", pool_shapes=SHAPES, ready={"claude": 1})
    assert (decision.start, decision.pool) == (WARM, "claude")


def m(i, state=READY, shape="s"):
    return Member(f"m{i}", "p", shape, state)


def test_refill_makes_what_is_missing():
    assert refill_plan(5, "s", [m(1), m(2, WARMING)]).make == 3
    assert refill_plan(5, "s", []).make == 5


def test_refill_replaces_stale_and_failed_members():
    plan = refill_plan(2, "s", [m(1), m(2, shape="old"), m(3, FAILED)])
    assert plan.make == 1
    assert set(plan.remove) == {"m2", "m3"}


def test_refill_removes_warming_before_ready_beyond_the_size():
    plan = refill_plan(1, "s", [m(1, WARMING), m(2), m(3, WARMING)])
    assert plan.make == 0
    assert set(plan.remove) == {"m1", "m3"}


def test_a_removed_pool_drains():
    assert refill_plan(0, "s", [m(1), m(2, WARMING)]) == refill_plan(0, "s", [m(2, WARMING), m(1)])
    assert set(refill_plan(0, "s", [m(1), m(2, WARMING)]).remove) == {"m1", "m2"}


@given(st.integers(0, 20), st.lists(st.tuples(st.sampled_from([READY, WARMING, FAILED]), st.booleans()), max_size=30))
def test_refill_always_ends_at_the_size(size, specs):
    members = [Member(f"m{i}", "p", "s" if same else "old", state) for i, (state, same) in enumerate(specs)]
    plan = refill_plan(size, "s", members)
    left = [x for x in members if x.id not in plan.remove]
    assert plan.make >= 0
    assert len(left) + plan.make == size
    assert all(x.shape == "s" and x.state != FAILED for x in left)
    assert len(set(plan.remove)) == len(plan.remove)


def test_counts_cover_every_state_of_every_pool():
    found = counts([Member("a", "p", "s", READY), Member("b", "p", "s", READY)], {"p": "s", "q": "t"})
    assert found[("p", READY)] == 2
    assert found[("p", WARMING)] == 0
    assert found[("q", FAILED)] == 0
    assert found[("q", STALE)] == 0


def test_members_of_an_earlier_shape_count_as_stale_not_ready():
    """Its settings changed: the old members are being replaced and no claim takes them."""
    found = counts([Member("a", "p", "old", READY), Member("b", "p", "new", WARMING)], {"p": "new"})
    assert found[("p", READY)] == 0 and found[("p", STALE)] == 1 and found[("p", WARMING)] == 1
