"""The agentapi-proxy layer's routing, errors, CORS and description, over real HTTP on loopback.

The backend is the in-memory one and the agent the imitation agentapi of this
directory, as for the other tests of the HTTP layer; the layer against the real
agentapi, the Go peer and its own client is in ``tests/unit/compat``.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from agentproxy.api import create_app
from agentproxy.api.compat.peer_model import first_segment
from agentproxy.api.openapi import openapi_document
from agentproxy.backends.base import AgentStatus

from .._support import settings_with
from .memory_backend import MemoryBackend
from .support import documented_operations, served_operations

ON = "compat.agentapi_proxy.enabled=true"


@pytest.fixture
def settings():
    return settings_with(ON, "compat.agentapi_proxy.session=peer")


async def peer_error(response, status: int) -> dict:
    """The body of an error of a peer route: the peer's ``message`` and agentproxy's ``error``."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"message", "error"} and body["message"] == body["error"]["message"]
    return body


async def test_the_layer_is_off_by_default():
    app = create_app(settings_with(), MemoryBackend())
    assert not [r for r in app.router.resources() if r.canonical in ("/start", "/search", "/health")]
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.post("/start")).status == 404
        assert (await client.get("/health")).status == 404
        # Route names are free for agents while the layer is off.
        assert (await client.post("/sessions/s1/agents", json={"id": "search"})).status == 201


async def test_agentproxy_routes_keep_priority_and_their_own_errors(api):
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    assert (await api.get("/agents")).status == 200
    assert (await api.get("/healthz")).status == 200
    assert (await api.get("/sessions/s1/agents/a1/api/status")).status == 200
    # A method agentproxy's route does not take is still its 405, not a session lookup.
    wrong = await api.post("/sessions/s1/agents/a1")
    assert wrong.status == 405 and (await wrong.json())["error"]["code"] == "method_not_allowed"
    assert (await api.get("/agents/anything")).status == 404


@pytest.mark.parametrize("agent_id", ["start", "search", "sessions", "health", "healthz", "agents", "events",
                                      "metrics", "readyz"])
async def test_an_agent_id_that_names_a_route_is_refused_while_the_layer_is_on(api, backend, agent_id):
    response = await api.post("/sessions/s1/agents", json={"id": agent_id})
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["field"] == "id" and "compat.agentapi_proxy.enabled" in error["message"]
    assert agent_id not in backend.agents


async def test_no_route_of_the_app_is_taken_for_a_session(settings):
    app = create_app(settings, MemoryBackend())
    *own, proxy = list(app.router.resources())  # the session proxy is registered last
    assert proxy.canonical == "/{session_id}/{path}"
    segments = {first_segment(resource.canonical) for resource in own} - {""}
    assert {"sessions", "agents", "events", "healthz", "readyz", "metrics", "openapi.json", "start", "search",
            "health"} <= segments
    for segment in segments:
        match = await app.router.resolve(make_mocked_request("GET", f"/{segment}/status"))
        assert match.route.resource is not proxy, segment
    match = await app.router.resolve(make_mocked_request("GET", "/searcher/status"))
    assert match.route.resource is proxy


def test_openapi_describes_the_layer_exactly_when_it_is_on(settings):
    from agentproxy.api.compat import openapi_paths

    document = openapi_document(extra_paths=openapi_paths(settings))
    assert served_operations(settings) == documented_operations(document)
    assert openapi_paths(settings_with()) == {}
    ids = [op["operationId"] for item in document["paths"].values() for k, op in item.items() if k != "parameters"]
    assert len(ids) == len(set(ids))


async def test_start_maps_environment_tags_and_message_onto_the_spec(api, backend):
    response = await api.post("/start", json={"environment": {"GIT_AUTHOR_NAME": "bot"}, "message": "body words",
                                              "tags": {"repository": "org/repo", "message": "tag words"},
                                              "metadata": {"description": "ignored, as by the peer"}})
    assert response.status == 200
    body = await response.json()
    assert list(body) == ["session_id"]
    spec = backend.agents[body["session_id"]].spec
    assert spec.session == "peer" and spec.type == "echo" and spec.owner is None
    assert dict(spec.env) == {"GIT_AUTHOR_NAME": "bot"}
    assert dict(spec.tags) == {"repository": "org/repo", "message": "tag words"}
    assert spec.message == "tag words"  # the tag wins, as in the peer
    plain = await (await api.post("/start")).json()
    assert backend.agents[plain["session_id"]].spec.message is None


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"environment": ["A=1"]}, 400, "environment"),
    ({"environment": {"AGENTAPI_PORT": "1"}}, 422, "environment.AGENTAPI_PORT"),
    ({"environment": {"1BAD": "x"}}, 422, "environment.1BAD"),
    ({"tags": {"a": 1}}, 400, "tags.a"),
    ({"tags": "a=b"}, 400, "tags"),
    ({"tags": {"a=b": "c"}}, 400, "tags"),
    ({"message": 5}, 400, "message"),
    ({"message": "hi \ud800"}, 400, "message"),  # a lone surrogate: no UTF-8 bytes
    ({"tags": {"a": "nul\x00"}}, 400, "tags.a"),
    ({"tags": {"\udc80": "x"}}, 400, "tags"),
    ({"environment": {"A": "x\x00y"}}, 422, "environment.A"),
])
async def test_a_bad_start_body_is_refused_naming_the_field(api, backend, body, status, field):
    error = await peer_error(await api.post("/start", json=body), status)
    assert error["error"]["field"] == field and error["message"].startswith(field)
    assert not backend.agents


async def test_malformed_json_is_refused_rather_than_taken_as_empty(api, backend):
    response = await api.post("/start", data="{bad", headers={"Content-Type": "application/json"})
    assert (await peer_error(response, 400))["error"]["code"] == "invalid_json"
    assert not backend.agents


async def test_search_answers_session_infos_newest_first(api, backend):
    first = (await (await api.post("/start", json={"tags": {"team": "a"}})).json())["session_id"]
    second = (await (await api.post("/start")).json())["session_id"]
    backend.set_state("peer", first, status=AgentStatus.FAILED)
    sessions = (await (await api.get("/search")).json())["sessions"]
    assert [s["session_id"] for s in sessions] == [second, first]
    newest = sessions[0]
    assert newest["user_id"] == "anonymous" and newest["status"] == "active" and newest["tags"] is None
    assert newest["started_at"] == newest["created_at"] == newest["updated_at"]
    assert sessions[1]["status"] == "failed" and sessions[1]["tags"] == {"team": "a"}
    failed = (await (await api.get("/search?status=failed&tag.team=a&limit=1000")).json())["sessions"]
    assert [s["session_id"] for s in failed] == [first]


async def test_only_the_configured_session_is_served(api, backend):
    assert (await api.post("/sessions/other/agents", json={"id": "elsewhere"})).status == 201
    assert (await (await api.get("/search")).json())["sessions"] == []
    assert (await peer_error(await api.get("/elsewhere/status"), 404))["message"] == "Session not found"
    assert (await peer_error(await api.delete("/sessions/elsewhere"), 404))["message"] == "Session not found"
    assert "elsewhere" in backend.agents


async def test_the_session_proxy_strips_the_id_keeps_the_query_and_adds_cors(api, upstream):
    session = (await (await api.post("/start")).json())["session_id"]
    response = await api.get(f"/{session}/debug/headers?b=2&a=%20x")
    assert response.status == 200
    assert (await response.json())["raw_path"] == "/debug/headers?b=2&a=%20x"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


async def test_the_session_proxy_says_503_while_the_agent_boots(api, backend):
    session = (await (await api.post("/start")).json())["session_id"]
    backend.set_state("peer", session, status=AgentStatus.STARTING, upstream=None)
    response = await api.get(f"/{session}/status")
    assert (await peer_error(response, 503))["error"]["code"] == "agent_not_ready"
    assert response.headers["Retry-After"]


async def test_delete_purges_and_answers_as_the_peer(api, backend):
    session = (await (await api.post("/start")).json())["session_id"]
    response = await api.delete(f"/sessions/{session}")
    assert response.status == 200
    assert await response.json() == {"message": "Session terminated successfully", "session_id": session,
                                      "status": "terminated"}
    assert backend.deleted == [("peer", session, True)]
    assert (await peer_error(await api.delete(f"/sessions/{session}"), 404))["message"] == "Session not found"


async def test_cors_of_the_peer_routes_follows_the_origin(api):
    local = {"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"}
    preflight = await api.options("/start", headers=local)
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]
    foreign = await api.options("/sessions/x", headers={**local, "Origin": "https://evil.example"})
    assert foreign.status == 204 and "Access-Control-Allow-Origin" not in foreign.headers
    lookalike = await api.get("/health", headers={"Origin": "http://localhost.evil.example"})
    assert "Access-Control-Allow-Origin" not in lookalike.headers
    answer = await api.get("/search", headers={"Origin": "https://127.0.0.1:8443"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://127.0.0.1:8443"


async def test_configured_origins_replace_the_loopback_default(backend):
    settings = settings_with(ON, "compat.agentapi_proxy.allowed_origins=https://ui.example.com, https://b.example")
    async with TestClient(TestServer(create_app(settings, backend), host="127.0.0.1")) as client:
        ok = await client.get("/health", headers={"Origin": "https://b.example"})
        assert ok.headers["Access-Control-Allow-Origin"] == "https://b.example"
        local = await client.get("/health", headers={"Origin": "http://localhost:3000"})
        assert "Access-Control-Allow-Origin" not in local.headers


def test_status_words_and_ports_of_a_session(settings):
    from agentproxy.api.compat.peer_model import peer_status, session_port
    from agentproxy.backends.base import AgentState
    from agentproxy.spec import build_spec

    assert {s: peer_status(s) for s in AgentStatus} == {
        AgentStatus.PENDING: "active", AgentStatus.STARTING: "active", AgentStatus.READY: "active",
        AgentStatus.FAILED: "failed", AgentStatus.STOPPING: "stopping", AgentStatus.STOPPED: "stopped",
        AgentStatus.SUSPENDED: "suspended", AgentStatus.WAITING_INPUT: "active"}
    state = AgentState(spec=build_spec(settings, "peer", "a1"), mode="k8s", status=AgentStatus.PENDING,
                       created_at=datetime(2025, 1, 1, tzinfo=UTC))
    assert session_port(state) == 0
    assert session_port(dataclasses.replace(state, upstream="http://10.0.0.7:3284")) == 3284
    assert session_port(dataclasses.replace(state, details={"port": 9001})) == 9001


def test_tags_live_in_the_spec_and_a_spec_without_them_keeps_its_json(settings):
    from agentproxy.spec import AgentSpec, build_spec

    plain = build_spec(settings, "peer", "a1", message="hi")
    assert "tags" not in plain.to_dict()  # existing agents keep their fingerprint
    tagged = dataclasses.replace(plain, tags={"team": "red"})
    assert AgentSpec.from_json(tagged.to_json()) == tagged and tagged.fingerprint() != plain.fingerprint()
    assert AgentSpec.from_json(plain.to_json()) == plain
