"""Quotas per user and group over real HTTP: agents, running agents, creates in flight; 429
naming the quota, nothing half-created; ``GET /usage``."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agentproxy.api import create_app, hash_key
from agentproxy.backends.base import AgentStatus
from agentproxy.settings import SettingsError

from .._support import settings_with
from .memory_backend import MemoryBackend
from .support import error_of

ALICE, BOB, ADMIN = "k-alice", "k-bob", "k-admin"
KEYS = [{"name": "alice", "sha256": hash_key(ALICE)}, {"name": "bob", "sha256": hash_key(BOB)},
        {"name": "root", "sha256": hash_key(ADMIN), "admin": True}]


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def settings():
    return settings_with("teams.groups={ml: [alice, bob]}",
                         "teams.quotas={users: {alice: {agents: 3, running: 2}}, groups: {ml: {agents: 4}}, "
                         "default: {agents: 1}}")


async def test_agents_and_running_quotas_refuse_with_429_naming_them(make_api, backend):
    api = await make_api(KEYS)
    for agent in ("a1", "a2"):
        assert (await api.post("/sessions/s1/agents", json={"id": agent}, headers=h(ALICE))).status == 201
    error = await error_of(await api.post("/sessions/s1/agents", json={"id": "a3"}, headers=h(ALICE)), 429)
    assert error["code"] == "quota_exceeded" and error["field"] == "teams.quotas.users.alice.running"
    assert "a3" not in backend.agents  # nothing half-created
    # Suspending makes room to run; a resume beyond it is refused the same way.
    assert (await api.post("/sessions/s1/agents/a1/suspend", headers=h(ALICE))).status == 200
    assert (await api.post("/sessions/s1/agents", json={"id": "a3"}, headers=h(ALICE))).status == 201
    response = await api.post("/sessions/s1/agents/a1/resume", headers=h(ALICE))
    assert (await error_of(response, 429))["field"] == "teams.quotas.users.alice.running"
    assert "Retry-After" not in response.headers  # waiting does not help: suspend or delete first
    assert backend.agents["a1"].status is AgentStatus.SUSPENDED
    # Three agents held: the agents quota.
    error = await error_of(await api.post("/sessions/s1/agents", json={"id": "a4"}, headers=h(ALICE)), 429)
    assert error["field"] == "teams.quotas.users.alice.agents" and "3" in error["message"]
    # bob: the default quota, then the group's (ml holds alice's three and bob's one).
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"}, headers=h(BOB))).status == 201
    error = await error_of(await api.post("/sessions/s2/agents", json={"id": "b2"}, headers=h(BOB)), 429)
    assert error["field"] == "teams.quotas.default.agents"
    # A repeat of an existing agent is no new agent; admins have no quota.
    assert (await api.post("/sessions/s2/agents", json={"id": "b1"}, headers=h(BOB))).status == 200
    assert (await api.post("/sessions/s9/agents", json={"id": "r1"}, headers=h(ADMIN))).status == 201
    usage = await (await api.get("/usage", headers=h(ALICE))).json()
    assert usage["user"] == "alice"
    assert [(q["kind"], q["name"], q["usage"], q["quota"]["agents"]) for q in usage["quotas"]] == [
        ("user", "alice", {"agents": 3, "running": 2, "creating": 0}, 3),
        ("group", "ml", {"agents": 4, "running": 3, "creating": 0}, 4)]


async def test_creates_in_flight_are_counted_and_answered_with_retry_after():
    settings = settings_with("teams.quotas={default: {creating: 2}}")
    backend = MemoryBackend(upstream=None)  # agents stay pending: creates in flight until they answer
    client = TestClient(TestServer(create_app(settings, backend, KEYS), host="127.0.0.1"))
    await client.start_server()
    try:
        answers = await asyncio.gather(*(client.post("/sessions/s1/agents", json={"id": f"c{i}"}, headers=h(BOB))
                                         for i in range(5)))
        assert sorted(r.status for r in answers) == [201, 201, 429, 429, 429]
        refused = [r for r in answers if r.status == 429][0]
        assert refused.headers["Retry-After"] == "5"
        assert (await refused.json())["error"]["field"] == "teams.quotas.default.creating"
        assert len(backend.agents) == 2
    finally:
        await client.close()


def test_bad_quotas_name_the_setting():
    for override, path in (("teams.quotas={users: {alice: {agents: -1}}}", "teams.quotas.users.alice.agents"),
                           ("teams.quotas={default: {cpus: 1}}", "teams.quotas.default.cpus"),
                           ("teams.quotas={everyone: {}}", "teams.quotas.everyone")):
        with pytest.raises(SettingsError) as caught:
            settings_with(override)
        assert caught.value.key == path


async def test_the_agentapi_proxy_layer_keeps_the_same_quotas(backend):
    settings = settings_with("compat.agentapi_proxy.enabled=true", "teams.quotas={default: {agents: 1}}")
    client = TestClient(TestServer(create_app(settings, backend, KEYS), host="127.0.0.1"))
    await client.start_server()
    try:
        assert (await client.post("/start", json={}, headers=h(BOB))).status == 200
        refused = await client.post("/start", json={}, headers=h(BOB))
        assert refused.status == 429
        body = await refused.json()
        assert body["error"]["field"] == "teams.quotas.default.agents" and body["message"] == body["error"]["message"]
        assert len(backend.agents) == 1
        # The agents of the peer's session are owned by the key's user, as agentproxy's own.
        assert [s.spec.owner for s in backend.agents.values()] == ["bob"]
    finally:
        await client.close()


async def test_a_request_to_a_suspended_agent_resumes_it_only_within_its_owners_quotas(make_api, backend):
    api = await make_api(KEYS)
    for agent in ("a1", "a2"):
        assert (await api.post("/sessions/s1/agents", json={"id": agent, "share": "ml"}, headers=h(ALICE))).status == 201
    assert (await api.post("/sessions/s1/agents/a1/suspend", headers=h(ALICE))).status == 200
    assert (await api.post("/sessions/s1/agents", json={"id": "a3"}, headers=h(ALICE))).status == 201
    # alice runs two, her most: a request to the suspended one does not wake it (on either path).
    for path in ("/sessions/s1/agents/a1/api/status", "/sessions/s1/agents/a1/api/messages"):
        response = await api.get(path, headers=h(ALICE))
        assert (await error_of(response, 429))["field"] == "teams.quotas.users.alice.running"
    assert backend.agents["a1"].status is AgentStatus.SUSPENDED
    # Nor can bob, who shares her group, wake it or resume it: the quota is the owner's.
    response = await api.get("/sessions/s1/agents/a1/api/status", headers=h(BOB))
    assert (await error_of(response, 429))["field"] == "teams.quotas.users.alice.running"
    response = await api.post("/sessions/s1/agents/a1/resume", headers=h(BOB))
    assert (await error_of(response, 429))["field"] == "teams.quotas.users.alice.running"
    assert backend.agents["a1"].status is AgentStatus.SUSPENDED
    # Once she suspends another, the request wakes it.
    assert (await api.post("/sessions/s1/agents/a2/suspend", headers=h(ALICE))).status == 200
    response = await api.get("/sessions/s1/agents/a1/api/status", headers=h(BOB))
    assert response.status in (200, 503), await response.text()
    assert backend.agents["a1"].status is not AgentStatus.SUSPENDED
