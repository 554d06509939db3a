"""Agent routes over real HTTP on loopback: create, list, get, delete, logs, and their errors."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentproxy.api.agents import LARGE_BODY
from agentproxy.backends.base import AgentStatus, Rejected, Unavailable
from agentproxy.naming import AGENT_ID_RULE, SESSION_ID_RULE
from agentproxy.spec import build_spec

from .memory_backend import MemoryBackend
from .raw_client import Raw, get
from .support import error_of


async def test_create_without_a_body_makes_an_agent_of_the_default_type(api, backend: MemoryBackend):
    response = await api.post("/sessions/my-session/agents")
    assert response.status == 201
    agent = await response.json()
    assert agent["session"] == "my-session"
    assert agent["agent"] == "echo"
    assert agent["status"] == "ready"
    assert agent["mode"] == "memory"
    assert agent["url"] == f"/sessions/my-session/agents/{agent['id']}/api/"
    assert agent["created_at"].startswith("2025-01-01T00:00:00") and agent["created_at"].endswith("+00:00")
    assert agent["resources"] == {"cpu_request": "100m", "cpu_limit": "500m", "memory_request": "256Mi",
                                  "memory_limit": "512Mi", "storage_size": "1Gi"}
    assert agent["restarts"] == 0 and agent["details"] == {"store": "memory"}
    assert agent["owner"] is None and agent["reason"] is None and agent["message"] is None
    assert agent["id"] in backend.agents


async def test_create_with_an_empty_json_body_and_with_every_field(api, backend: MemoryBackend):
    empty = await api.post("/sessions/s1/agents", data=b"", headers={"Content-Type": "application/json"})
    assert empty.status == 201
    body = {"id": "a1", "agent": "claude", "env": {"FOO": "bar"}, "message": "hello",
            "resources": {"cpu_request": "200m", "memory_limit": "256Mi", "memory_request": "128Mi"}}
    response = await api.post("/sessions/s1/agents", json=body)
    assert response.status == 201
    agent = await response.json()
    assert (agent["id"], agent["agent"]) == ("a1", "claude")
    assert agent["resources"]["cpu_request"] == "200m" and agent["resources"]["memory_limit"] == "256Mi"
    spec = backend.agents["a1"].spec
    assert dict(spec.env) == {"FOO": "bar"} and spec.message == "hello" and spec.command == ("claude",)


async def test_create_of_an_equal_spec_is_idempotent_and_a_different_one_conflicts(api):
    first = await api.post("/sessions/s1/agents", json={"id": "a1", "message": "hi"})
    assert first.status == 201
    again = await api.post("/sessions/s1/agents", json={"id": "a1", "message": "hi"})
    assert again.status == 200
    assert await again.json() == await first.json()
    other = await api.post("/sessions/s1/agents", json={"id": "a1", "message": "something else"})
    error = await error_of(other, 409)
    assert error["code"] == "conflict"
    elsewhere = await api.post("/sessions/s2/agents", json={"id": "a1", "message": "hi"})
    await error_of(elsewhere, 409)


async def test_malformed_ids_are_400_and_name_the_rule(api):
    error = await error_of(await api.post("/sessions/s1/agents", json={"id": "Not_Valid"}), 400)
    assert error["field"] == "id" and AGENT_ID_RULE in error["message"]
    error = await error_of(await api.post("/sessions/bad%20session/agents"), 400)
    assert error["field"] == "session" and SESSION_ID_RULE in error["message"]
    error = await error_of(await api.get("/sessions/s1/agents/UPPER"), 400)
    assert error["field"] == "agent" and AGENT_ID_RULE in error["message"]
    error = await error_of(await api.get("/agents", params={"session": "-x-"}), 400)
    assert error["field"] == "session"


async def test_body_shape_errors_are_400(api):
    error = await error_of(await api.post("/sessions/s1/agents", data=b"{not json",
                                          headers={"Content-Type": "application/json"}), 400)
    assert error["code"] == "invalid_json"
    error = await error_of(await api.post("/sessions/s1/agents", json=[1, 2]), 400)
    assert error["code"] == "invalid_body"
    error = await error_of(await api.post("/sessions/s1/agents", json={"typo": 1}), 400)
    assert error["field"] == "typo"
    error = await error_of(await api.post("/sessions/s1/agents", json={"agent": ["claude"]}), 400)
    assert error["field"] == "agent"
    error = await error_of(await api.post("/sessions/s1/agents", json={"env": "A=B"}), 400)
    assert error["field"] == "env"


async def test_valid_shape_with_invalid_values_is_422(api, backend: MemoryBackend):
    error = await error_of(await api.post("/sessions/s1/agents", json={"agent": "nope"}), 422)
    assert error["field"] == "agent" and "unknown agent type" in error["message"]
    error = await error_of(await api.post("/sessions/s1/agents", json={"env": {"AGENTAPI_X": "1"}}), 422)
    assert error["field"] == "env.AGENTAPI_X"
    error = await error_of(await api.post("/sessions/s1/agents", json={"resources": {"cpu_limit": "64"}}), 422)
    assert error["field"] == "resources.cpu_limit"
    backend.fail_next = Rejected("exceeded quota: agents", field="resources")
    error = await error_of(await api.post("/sessions/s1/agents"), 422)
    assert error == {"code": "rejected", "message": "exceeded quota: agents", "field": "resources"}


async def test_backend_unavailable_is_503_with_retry_after(api, backend: MemoryBackend):
    backend.fail_next = Unavailable("the API server does not answer")
    response = await api.post("/sessions/s1/agents")
    error = await error_of(response, 503)
    assert error["code"] == "unavailable" and "Retry-After" in response.headers


async def test_curl_d_without_a_content_type_is_taken_as_json(api):
    # `curl -d '{"message": "hello"}'` labels its JSON as a form.
    response = await api.post("/sessions/s1/agents", data=b'{"id": "c1", "message": "hello"}',
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status == 201, await response.text()
    assert (await response.json())["id"] == "c1"


async def test_non_json_body_is_415_and_an_oversized_one_413(api):
    error = await error_of(await api.post("/sessions/s1/agents", data=b"id=a1",
                                          headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    assert error["code"] == "unsupported_media_type"
    big = json.dumps({"message": "x" * (2 * 1024 * 1024)}).encode()
    error = await error_of(await api.post("/sessions/s1/agents", data=big,
                                          headers={"Content-Type": "application/json"}), 413)
    assert error["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(3):
            yield b" " * (512 * 1024)

    error = await error_of(await api.post("/sessions/s1/agents", data=chunks(),
                                          headers={"Content-Type": "application/json"}), 413)


async def test_list_get_and_filters(api, backend: MemoryBackend):
    for session, agent_id in (("s1", "a1"), ("s1", "a2"), ("s2", "b1")):
        assert (await api.post(f"/sessions/{session}/agents", json={"id": agent_id})).status == 201
    backend.set_state("s1", "a2", status=AgentStatus.FAILED, reason="CrashLoop", message="exit 1", restarts=3)

    listed = await (await api.get("/sessions/s1/agents")).json()
    assert [a["id"] for a in listed["agents"]] == ["a1", "a2"]
    everything = await (await api.get("/agents")).json()
    assert [a["id"] for a in everything["agents"]] == ["a1", "a2", "b1"]
    failed = await (await api.get("/agents", params={"status": "failed"})).json()
    assert [(a["id"], a["reason"], a["message"], a["restarts"]) for a in failed["agents"]] == \
        [("a2", "CrashLoop", "exit 1", 3)]
    of_s2 = await (await api.get("/agents", params={"session": "s2"})).json()
    assert [a["id"] for a in of_s2["agents"]] == ["b1"]
    ready_in_s1 = await (await api.get("/sessions/s1/agents", params={"status": "ready"})).json()
    assert [a["id"] for a in ready_in_s1["agents"]] == ["a1"]
    error = await error_of(await api.get("/agents", params={"status": "sleeping"}), 400)
    assert error["field"] == "status" and "pending" in error["message"]

    one = await api.get("/sessions/s1/agents/a1")
    assert one.status == 200 and (await one.json())["id"] == "a1"
    error = await error_of(await api.get("/sessions/s2/agents/a1"), 404)  # another session
    assert error["code"] == "not_found"
    await error_of(await api.get("/sessions/s1/agents/zz"), 404)


async def test_delete_and_purge(api, backend: MemoryBackend):
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    await api.post("/sessions/s1/agents", json={"id": "a2"})
    response = await api.delete("/sessions/s1/agents/a1")
    assert response.status == 200
    assert (await response.json())["status"] == "stopped"
    assert (await api.delete("/sessions/s1/agents/a2", params={"purge": "true"})).status == 200
    assert backend.deleted == [("s1", "a1", False), ("s1", "a2", True)]
    await error_of(await api.delete("/sessions/s1/agents/a1"), 404)
    error = await error_of(await api.delete("/sessions/s1/agents/a1", params={"purge": "maybe"}), 400)
    assert error["field"] == "purge"


async def test_logs_as_text_and_as_json(api):
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    text = await api.get("/sessions/s1/agents/a1/logs")
    assert text.status == 200 and text.content_type == "text/plain"
    lines = (await text.text()).splitlines()
    assert len(lines) == 100 and lines[-1] == "agent a1 line 200"
    tail = await api.get("/sessions/s1/agents/a1/logs", params={"tail": "3", "format": "json"})
    assert await tail.json() == {"session": "s1", "id": "a1", "tail": 3,
                                 "lines": ["agent a1 line 198", "agent a1 line 199", "agent a1 line 200"]}
    accepted = await api.get("/sessions/s1/agents/a1/logs?tail=1", headers={"Accept": "application/json"})
    assert (await accepted.json())["lines"] == ["agent a1 line 200"]
    for bad in ("0", "x", "100001"):
        error = await error_of(await api.get("/sessions/s1/agents/a1/logs", params={"tail": bad}), 400)
        assert error["field"] == "tail"
    await error_of(await api.get("/sessions/s1/agents/nope/logs"), 404)


async def test_unknown_routes_are_404_and_wrong_methods_405_in_json(api):
    error = await error_of(await api.get("/no/such/thing"), 404)
    assert error["code"] == "not_found"
    response = await api.put("/agents")
    error = await error_of(response, 405)
    assert error["code"] == "method_not_allowed" and response.headers["Allow"] == "GET"
    await error_of(await api.patch("/sessions/s1/agents/a1"), 405)


class ExplodingBackend(MemoryBackend):
    async def list(self, *args, **kwargs):
        raise RuntimeError("secret internal detail")


async def test_unexpected_exceptions_are_500_json_without_a_traceback(make_api, caplog):
    api = await make_api(backend_=ExplodingBackend())
    response = await api.get("/agents")
    error = await error_of(response, 500)
    assert error["code"] == "internal"
    assert "secret" not in error["message"] and "Traceback" not in await response.text()
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path-site", "aiohttp-site"])
async def test_a_list_of_megabytes_is_framed_by_its_length_and_the_connection_goes_on(make_api, settings, fast):
    # A list above LARGE_BODY is written part after part: its Content-Length must still be the
    # body's, byte for byte, or the next answer on the connection would be read from its middle.
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    for i in range(2600):
        await backend.create(build_spec(settings, f"s{i % 7}", f"a{i}", "echo"))
    api = await make_api(backend_=backend, fast=fast)
    raw = await Raw.open(api.port)
    try:
        raw.send(get("/agents") + get("/agents") + get("/healthz"))
        status, headers, body = await raw.answer()
        assert status == 200 and headers["content-type"] == "application/json; charset=utf-8"
        assert int(headers["content-length"]) == len(body) > LARGE_BODY
        assert [a["id"] for a in json.loads(body)["agents"]] == [s.id for s in await backend.list()]
        status, headers, again = await raw.answer()
        assert status == 200 and int(headers["content-length"]) == len(again) and again == body
        status, _, _ = await raw.answer()
        assert status == 200  # the pipelined request after two lists of megabytes
        backend.set_state("s3", "a3", status=AgentStatus.FAILED, reason="Crashed")  # one part made again
        raw.send(get("/agents"))
        status, headers, changed = await raw.answer()
        listed = {a["id"]: a for a in json.loads(changed)["agents"]}
        assert listed["a3"]["status"] == "failed" and len(listed) == 2600
    finally:
        await raw.close()


async def test_a_client_gone_in_the_middle_of_a_large_list_is_no_error(make_api, settings, caplog):
    backend = MemoryBackend(upstream="http://127.0.0.1:9")
    for i in range(2600):
        await backend.create(build_spec(settings, "s1", f"a{i}", "echo"))
    api = await make_api(backend_=backend, fast=False)
    for _ in range(3):
        raw = await Raw.open(api.port)
        raw.send(get("/agents"))
        await asyncio.wait_for(raw.reader.readexactly(4096), 10)  # the head and the first bytes, then gone
        raw.writer.transport.abort()
    await asyncio.sleep(0.2)
    response = await api.get("/agents")  # the server goes on serving lists
    assert response.status == 200 and len((await response.json())["agents"]) == 2600
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
