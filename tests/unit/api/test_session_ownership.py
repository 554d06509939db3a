"""Sessions belong to the owner of their oldest agent, over HTTP: another owner's create in one is
a 403 that tells nothing of what it holds (not whose it is, not its agents, not whether it is
full); admins may join any session; the agentapi-proxy layer's one session is shared."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app
from agentproxy.backends.limits import CreateLimits

from .._support import settings_with
from .memory_backend import MemoryBackend
from .support import ADMIN_KEY, ALICE_KEY, BOB_KEY, KEYS, bearer, error_of

ALICE, BOB, ADMIN = bearer(ALICE_KEY), bearer(BOB_KEY), bearer(ADMIN_KEY)


def tells_nothing(error: dict) -> None:
    """The refusal names the session and the rule, nothing the caller may not see."""
    assert error == {"code": "forbidden", "field": "session",
                     "message": "session 's1' belongs to another owner; create the agent in a session of your own"}


async def ids(api, headers, session: str | None = None) -> list[str]:
    path = "/agents" if session is None else f"/sessions/{session}/agents"
    return [a["id"] for a in (await (await api.get(path, headers=headers)).json())["agents"]]


async def test_another_owner_cannot_create_in_a_session(make_api, backend: MemoryBackend):
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=ALICE)).status == 201
    for body in ({"id": "b1"}, {}, {"id": "a1"}):  # a new id, a generated one, the id of alice's agent
        tells_nothing(await error_of(await api.post("/sessions/s1/agents", json=body, headers=BOB), 403))
    assert sorted(backend.agents) == ["a1"]
    assert await ids(api, BOB) == [] and await ids(api, BOB, "s1") == []
    assert (await api.post("/sessions/s1/agents", json={"id": "a2"}, headers=ALICE)).status == 201
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"}, headers=BOB)).status == 201


async def test_a_full_session_of_another_owner_is_the_same_403(make_api, backend: MemoryBackend):
    backend.set_limits(CreateLimits(per_session=1))
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=ALICE)).status == 201
    tells_nothing(await error_of(await api.post("/sessions/s1/agents", json={"id": "b1"}, headers=BOB), 403))
    error = await error_of(await api.post("/sessions/s1/agents", json={"id": "a2"}, headers=ALICE), 429)
    assert error["message"] == ("session 's1' is full: it holds the 1 agents agents.max_per_session allows; "
                                "delete some first")


async def test_an_admin_joins_any_session_and_the_session_stays_its_owners(make_api, backend: MemoryBackend):
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=ALICE)).status == 201
    assert (await api.post("/sessions/s1/agents", json={"id": "x1"}, headers=ADMIN)).status == 201
    assert backend.agents["x1"].spec.owner == "admin"
    assert (await api.post("/sessions/s1/agents", json={"id": "a2"}, headers=ALICE)).status == 201
    tells_nothing(await error_of(await api.post("/sessions/s1/agents", json={"id": "b1"}, headers=BOB), 403))
    assert await ids(api, ALICE, "s1") == ["a1", "a2"]  # the admin's agent is the admin's


async def test_a_session_without_agents_is_free_again(make_api):
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=ALICE)).status == 201
    assert (await api.delete("/sessions/s1/agents/a1", headers=ALICE)).status == 200
    assert (await api.post("/sessions/s1/agents", json={"id": "b1"}, headers=BOB)).status == 201
    tells_nothing(await error_of(await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=ALICE), 403))


async def test_without_keys_every_caller_may_use_every_session(make_api):
    api = await make_api()
    for agent_id in ("a1", "a2"):
        assert (await api.post("/sessions/s1/agents", json={"id": agent_id})).status == 201


async def test_the_compat_layers_session_is_shared_and_its_errors_tell_nothing(backend: MemoryBackend):
    settings = settings_with("compat.agentapi_proxy.enabled=true", "compat.agentapi_proxy.session=peer")
    backend.set_limits(CreateLimits(per_session=2))
    client = TestClient(TestServer(create_app(settings, backend, KEYS), host="127.0.0.1"))
    await client.start_server()
    try:
        alice = (await (await client.post("/start", json={}, headers=ALICE)).json())["session_id"]
        bob = (await (await client.post("/start", json={}, headers=BOB)).json())["session_id"]
        assert {backend.agents[alice].spec.owner, backend.agents[bob].spec.owner} == {"alice", "bob"}
        # The native API treats the same session as shared; each agent is still seen by its owner alone.
        assert await ids(client, BOB, "peer") == [bob]
        full = await client.post("/start", json={}, headers=BOB)
        body = await full.json()
        assert full.status == 429 and alice not in json.dumps(body) and "alice" not in json.dumps(body)
        search = await (await client.get("/search", headers=BOB)).json()
        assert [s["session_id"] for s in search["sessions"]] == [bob]
    finally:
        await client.close()
