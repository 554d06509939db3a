"""Users, groups and sharing over real HTTP: keys bound to users, groups from the key and from
``teams.groups``, admins by group, an agent shared with one of its owner's groups."""

from __future__ import annotations

import pytest

from agentproxy.api import hash_key
from agentproxy.apikeys import ApiKey, parse_api_keys
from agentproxy.settings import SettingsError
from agentproxy.spec import build_spec

from .._support import settings_with
from .support import error_of

ALICE, ALICE2, BOB, CAROL, DAVE, OLD = "k-alice-1", "k-alice-2", "k-bob", "k-carol", "k-dave", "k-old"
KEYS = [
    {"name": "alice-laptop", "sha256": hash_key(ALICE), "user": "alice"},
    {"name": "alice-ci", "sha256": hash_key(ALICE2), "user": "alice"},
    {"name": "bob", "sha256": hash_key(BOB), "groups": ["ml"]},       # a group from the key itself
    {"name": "carol", "sha256": hash_key(CAROL)},                      # in no group of alice's
    {"name": "dave", "sha256": hash_key(DAVE)},                        # an admin by teams.admin_group
    {"name": "legacy", "sha256": hash_key(OLD), "admin": False},       # a key of before users: owner = name
]


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings():
    return settings_with("teams.groups={ml: [alice], web: [carol], platform: [dave]}", "teams.admin_group=platform")


@pytest.fixture
async def team(make_api):
    return await make_api(KEYS)


async def test_keys_of_one_user_share_that_users_agents(team):
    assert (await team.post("/sessions/s1/agents", json={"id": "a1"}, headers=h(ALICE))).status == 201
    agent = await (await team.get("/sessions/s1/agents/a1", headers=h(ALICE2))).json()
    assert agent["owner"] == "alice" and agent["group"] is None
    assert (await team.delete("/sessions/s1/agents/a1", headers=h(ALICE2))).status == 200


async def test_a_key_without_a_user_owns_by_its_name_as_before(team):
    assert (await team.post("/sessions/s9/agents", json={"id": "old"}, headers=h(OLD))).status == 201
    agent = await (await team.get("/sessions/s9/agents/old", headers=h(OLD))).json()
    assert agent["owner"] == "legacy"
    await error_of(await team.get("/sessions/s9/agents/old", headers=h(ALICE)), 404)


async def test_a_shared_agent_is_seen_and_reached_by_the_group_but_deleted_only_by_owner_and_admins(team):
    assert (await team.post("/sessions/s1/agents", json={"id": "a1", "share": "ml"}, headers=h(ALICE))).status == 201
    assert (await team.post("/sessions/s1/agents", json={"id": "a2"}, headers=h(ALICE))).status == 201
    listed = await (await team.get("/agents", headers=h(BOB))).json()
    assert [(a["id"], a["owner"], a["group"]) for a in listed["agents"]] == [("a1", "alice", "ml")]
    assert (await team.get("/sessions/s1/agents/a1", headers=h(BOB))).status == 200
    assert (await team.get("/sessions/s1/agents/a1/api/status", headers=h(BOB))).status == 200
    await error_of(await team.get("/sessions/s1/agents/a2", headers=h(BOB)), 404)
    # Outside the group: the agent does not exist.
    for method, path in (("GET", "/sessions/s1/agents/a1"), ("GET", "/sessions/s1/agents/a1/api/status"),
                         ("DELETE", "/sessions/s1/agents/a1")):
        await error_of(await team.request(method, path, headers=h(CAROL)), 404)
    assert (await (await team.get("/agents", headers=h(CAROL))).json())["agents"] == []
    error = await error_of(await team.delete("/sessions/s1/agents/a1", headers=h(BOB)), 403)
    assert error["field"] == "agent" and "owner" in error["message"]
    assert (await team.get("/sessions/s1/agents/a1", headers=h(ALICE))).status == 200  # still there
    # A member may not add agents to the owner's session.
    await error_of(await team.post("/sessions/s1/agents", json={"id": "b1"}, headers=h(BOB)), 403)
    # dave is an admin through teams.admin_group: sees and deletes everything.
    listed = await (await team.get("/agents", headers=h(DAVE))).json()
    assert [a["id"] for a in listed["agents"]] == ["a1", "a2"]
    assert (await team.delete("/sessions/s1/agents/a1", headers=h(DAVE))).status == 200


async def test_sharing_with_a_group_one_is_not_in_is_refused_naming_the_field(team, backend):
    for key, group in ((CAROL, "ml"), (ALICE, "web"), (ALICE, "nosuch")):
        error = await error_of(await team.post("/sessions/s1/agents", json={"id": "x1", "share": group},
                                               headers=h(key)), 403)
        assert error["field"] == "share" and repr(group) in error["message"]
    error = await error_of(await team.post("/sessions/s1/agents", json={"share": 3}, headers=h(ALICE)), 400)
    assert error["field"] == "share"
    assert backend.agents == {}


def test_an_unshared_spec_keeps_the_fingerprint_it_had_before_groups(settings):
    spec = build_spec(settings, "s1", "a1", owner="alice")
    assert "group" not in spec.to_dict() and "profile" not in spec.to_dict()


def test_key_records_take_user_and_groups_and_check_them():
    key, = parse_api_keys([{"name": "k", "sha256": "a" * 64, "user": "alice", "groups": ["ml", "web"]}])
    assert (key.owner, key.groups) == ("alice", ("ml", "web"))
    assert ApiKey("k", "a" * 64).owner == "k"
    for bad in ({"user": "al ice"}, {"groups": ["ok", "no/slash"]}, {"groups": "ml"}):
        with pytest.raises(ValueError, match="user|group"):
            parse_api_keys([{"name": "k", "sha256": "a" * 64, **bad}])


@pytest.mark.parametrize("override, path", [
    ("teams.groups={ml: [al ice]}", "teams.groups.ml"),
    ("teams.groups=[ml]", "teams.groups"),
    ("teams.admin_group=a/b", "teams.admin_group"),
    ("server.api_keys=[{name: k, sha256: " + "a" * 64 + ", user: 'x y'}]", "server.api_keys"),
])
def test_bad_team_settings_name_the_setting(override, path):
    with pytest.raises(SettingsError) as caught:
        settings_with(override)
    assert caught.value.key == path, str(caught.value)


async def test_an_existing_agent_is_shared_and_unshared_by_its_owner_and_admins_only(team, backend):
    assert (await team.post("/sessions/s1/agents", json={"id": "a1"}, headers=h(ALICE))).status == 201
    await error_of(await team.get("/sessions/s1/agents/a1", headers=h(BOB)), 404)
    shared = await team.put("/sessions/s1/agents/a1/share", json={"group": "ml"}, headers=h(ALICE))
    assert shared.status == 200 and (await shared.json())["group"] == "ml"
    assert backend.agents["a1"].status.value == "ready"  # it ran on
    assert (await team.get("/sessions/s1/agents/a1/api/status", headers=h(BOB))).status == 200
    listed = await (await team.get("/agents", headers=h(BOB))).json()
    assert [a["id"] for a in listed["agents"]] == ["a1"]
    # bob sees it but may not change who does; carol does not see it at all.
    error = await error_of(await team.put("/sessions/s1/agents/a1/share", json={"group": None}, headers=h(BOB)), 403)
    assert error["field"] == "agent"
    await error_of(await team.put("/sessions/s1/agents/a1/share", json={"group": "web"}, headers=h(CAROL)), 404)
    # Only a group of the owner's; bad bodies name the field.
    for body, field, status in (({"group": "web"}, "group", 403), ({"group": 3}, "group", 400), ({}, "group", 400),
                                ({"group": "ml", "x": 1}, "x", 400)):
        error = await error_of(await team.put("/sessions/s1/agents/a1/share", json=body, headers=h(ALICE)), status)
        assert error["field"] == field, error
    # An admin may share it with the owner's groups, or stop sharing it.
    unshared = await team.put("/sessions/s1/agents/a1/share", json={"group": None}, headers=h(DAVE))
    assert unshared.status == 200 and (await unshared.json())["group"] is None
    await error_of(await team.get("/sessions/s1/agents/a1", headers=h(BOB)), 404)
