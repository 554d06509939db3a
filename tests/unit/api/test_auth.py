"""API keys: who may call, and which agents each key sees and reaches."""

from __future__ import annotations

import asyncio

import pytest

from agentproxy.api.auth import ApiKey, Authenticator, BindRefused, check_bind, hash_key, is_loopback_host

from .support import ADMIN_KEY, ALICE_KEY, BOB_KEY, KEYS, bearer, error_of, next_status_event


@pytest.fixture
async def keyed(make_api):
    """The API with keys; alice owns a1 in session s1, bob owns b1 in session s2."""
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=bearer(ALICE_KEY))).status == 201
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"}, headers={"X-API-Key": BOB_KEY})).status == 201
    return api


async def test_no_key_or_a_wrong_key_is_401(keyed):
    for headers in ({}, bearer("wrong"), {"X-API-Key": "wrong"}, {"Authorization": f"Basic {ALICE_KEY}"}):
        for method, path in (("GET", "/agents"), ("POST", "/sessions/s1/agents"), ("GET", "/events"),
                             ("GET", "/sessions/s1/agents/a1/api/status"), ("GET", "/metrics"),
                             ("GET", "/openapi.json"), ("GET", "/no/such/route")):
            response = await keyed.request(method, path, headers=headers)
            error = await error_of(response, 401)
            assert error["code"] == "unauthorized", (method, path, headers)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_probes_are_open(keyed):
    assert (await keyed.get("/healthz")).status == 200
    assert (await keyed.get("/readyz")).status == 200


async def test_agents_are_owned_by_the_key_that_created_them(keyed):
    agent = await (await keyed.get("/sessions/s1/agents/a1", headers=bearer(ALICE_KEY))).json()
    assert agent["owner"] == "alice"


async def test_a_non_admin_key_sees_and_reaches_only_its_own_agents(keyed):
    alice = bearer(ALICE_KEY)
    listed = await (await keyed.get("/agents", headers=alice)).json()
    assert [a["id"] for a in listed["agents"]] == ["a1"]
    in_session = await (await keyed.get("/sessions/s1/agents", headers=alice)).json()
    assert [a["id"] for a in in_session["agents"]] == ["a1"]
    assert (await (await keyed.get("/sessions/s2/agents", headers=alice)).json())["agents"] == []
    for method, path in (("GET", "/sessions/s2/agents/b1"), ("GET", "/sessions/s2/agents/b1/logs"),
                         ("GET", "/sessions/s2/agents/b1/api/status"),
                         ("POST", "/sessions/s2/agents/b1/api/message"), ("DELETE", "/sessions/s2/agents/b1")):
        await error_of(await keyed.request(method, path, headers=alice), 404)
    assert (await keyed.get("/sessions/s1/agents/a1/api/status", headers=alice)).status == 200
    # Taking another key's id does not reveal or replace its agent.
    error = await error_of(await keyed.post("/sessions/s1/agents", json={"id": "b1"}, headers=alice), 409)
    assert "bob" not in error["message"] and "s2" not in error["message"]
    assert (await keyed.get("/sessions/s2/agents/b1", headers={"X-API-Key": BOB_KEY})).status == 200


async def test_an_admin_key_sees_and_reaches_every_agent(keyed):
    admin = bearer(ADMIN_KEY)
    listed = await (await keyed.get("/agents", headers=admin)).json()
    assert [(a["id"], a["owner"]) for a in listed["agents"]] == [("a1", "alice"), ("b1", "bob")]
    assert (await keyed.get("/sessions/s2/agents/b1/api/status", headers=admin)).status == 200
    assert (await keyed.delete("/sessions/s2/agents/b1", headers=admin)).status == 200


async def test_events_of_other_keys_agents_are_not_streamed(keyed, backend):
    response = await keyed.get("/events", headers=bearer(ALICE_KEY))
    assert response.status == 200
    await asyncio.wait_for(response.content.readline(), 10)  # ": connected"
    await keyed.post("/sessions/s2/agents", json={"id": "b2"}, headers={"X-API-Key": BOB_KEY})
    await keyed.post("/sessions/s1/agents", json={"id": "a2"}, headers=bearer(ALICE_KEY))
    event = await next_status_event(response)
    assert (event["id"], event["event"]) == ("a2", "added")
    response.close()


def test_keys_are_digests_and_names_are_unique():
    assert hash_key("k") == "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        ApiKey("ci", "not-a-digest")
    with pytest.raises(ValueError, match="non-empty name"):
        ApiKey("", hash_key("k"))
    with pytest.raises(ValueError, match="unknown fields"):
        ApiKey.from_record({"name": "ci", "sha256": hash_key("k"), "key": "k"})
    with pytest.raises(ValueError, match="unique"):
        Authenticator([ApiKey("ci", hash_key("a")), ApiKey("ci", hash_key("b"))])
    assert ApiKey.from_record({"name": "ci", "sha256": hash_key("k").upper()}).admin is False


def test_an_open_api_is_refused_beyond_loopback():
    open_api, keyed = Authenticator(), Authenticator(KEYS)
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback_host(host), host
        check_bind(host, open_api)
    for host in ("0.0.0.0", "::", "", "192.0.2.1", "agents.example"):
        assert not is_loopback_host(host), host
        with pytest.raises(BindRefused, match="server.api_keys"):
            check_bind(host, open_api)
        check_bind(host, keyed)
        check_bind(host, open_api, allow_unauthenticated_remote=True)


def test_a_tokens_caller_is_made_once_per_identity_and_the_memory_is_bounded():
    """The relay's fast path asks for the caller of a remembered token on every request: the same
    caller comes back (its groups from the token and from teams.groups, admin by group), and no
    more identities are kept than the verifier keeps tokens."""
    from agentproxy.teams.config import Teams
    from agentproxy.teams.oidc import Identity
    from agentproxy.teams.tokens import MAX_REMEMBERED

    auth = Authenticator(teams=Teams(admin_group="platform", members={"platform": frozenset({"dave"})}))
    dave = Identity("dave", frozenset({"ml"}), 2e9, "id-dave")
    first = auth.principal_of_identity(dave)
    assert first.name == "dave" and first.admin and first.groups == {"ml", "platform"} and first.key == "oidc"
    assert auth.principal_of_identity(Identity("dave", frozenset({"ml"}), 2e9, "id-dave")) is first
    carol = auth.principal_of_identity(Identity("carol", frozenset({"web"}), 2e9, "id-carol"))
    assert not carol.admin and carol.groups == {"web"}
    for n in range(MAX_REMEMBERED):
        auth.principal_of_identity(Identity(f"user{n}", frozenset(), 2e9, f"id-{n}"))
    assert len(auth._principals) == MAX_REMEMBERED
    assert dave not in auth._principals  # the oldest forgotten first
    again = auth.principal_of_identity(dave)
    assert again == first and again is not first
