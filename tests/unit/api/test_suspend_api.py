"""Suspend and resume over HTTP (in-memory backend, imitation agentapi): the routes, owner
scoping, a proxied request to a suspended agent (503 with Retry-After, or a wait of
``agents.resume_wait``), and the metrics of suspends, resumes and resume-to-ready."""

from __future__ import annotations

import asyncio

from agentproxy.backends.base import AgentStatus

from .memory_backend import MemoryBackend
from .support import ALICE_KEY, BOB_KEY, KEYS, Upstream, bearer, error_of, labels, scrape

AGENT = "/sessions/s1/agents/a1"


async def test_suspend_and_resume_answer_the_agent_and_repeat_as_no_ops(api, backend: MemoryBackend):
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    for _ in range(2):
        response = await api.post(f"{AGENT}/suspend")
        assert response.status == 200, await response.text()
        agent = await response.json()
        assert (agent["id"], agent["status"], agent["reason"]) == ("a1", "suspended", "Suspended")
        assert "suspended through the API" in agent["message"]
    listed = await (await api.get("/agents?status=suspended")).json()
    assert [a["id"] for a in listed["agents"]] == ["a1"]
    for _ in range(2):
        response = await api.post(f"{AGENT}/resume")
        assert response.status == 200
        assert (await response.json())["status"] == "ready"
    assert backend.agents["a1"].status is AgentStatus.READY
    await error_of(await api.post("/sessions/s1/agents/nobody/suspend"), 404)
    await error_of(await api.post("/sessions/s2/agents/a1/resume"), 404)
    await error_of(await api.post("/sessions/s1/agents/NOPE/suspend"), 400)


async def test_only_the_owner_or_an_admin_may_suspend_or_resume(make_api, backend: MemoryBackend):
    api = await make_api(KEYS)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"}, headers=bearer(ALICE_KEY))).status == 201
    for verb in ("suspend", "resume"):
        await error_of(await api.post(f"{AGENT}/{verb}", headers=bearer(BOB_KEY)), 404)
        await error_of(await api.post(f"{AGENT}/{verb}"), 401)
    assert backend.agents["a1"].status is AgentStatus.READY  # nothing above touched it
    assert (await api.post(f"{AGENT}/suspend", headers=bearer(ALICE_KEY))).status == 200
    suspended = backend.agents["a1"]
    assert suspended.status is AgentStatus.SUSPENDED


async def test_a_request_to_a_suspended_agent_resumes_it(api, backend: MemoryBackend, upstream: Upstream):
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    assert (await api.post(f"{AGENT}/suspend")).status == 200
    backend.upstream = None  # resumed agents start pending: the imitation is not theirs yet
    response = await api.get(f"{AGENT}/api/status")
    error = await error_of(response, 503)
    assert error["code"] == "agent_resuming" and response.headers["Retry-After"] == "2"
    assert "was suspended and is resuming" in error["message"]
    assert backend.agents["a1"].status is AgentStatus.PENDING and not backend.agents["a1"].suspended
    # Still on its way: the usual answer, now that it is not suspended.
    again = await error_of(await api.get(f"{AGENT}/api/status"), 503)
    assert again["code"] == "agent_resuming"  # this proxy resumed it and it is not ready yet
    backend.set_state("s1", "a1", status=AgentStatus.READY, upstream=upstream.url)
    assert (await api.get(f"{AGENT}/api/status")).status == 200

    samples = await scrape(api)
    assert samples[("agentproxy_agent_suspends_total", labels(cause="api"))] == 1
    assert samples[("agentproxy_agent_suspends_total", labels(cause="idle"))] == 0
    assert samples[("agentproxy_agent_resumes_total", labels(cause="request"))] == 1
    assert samples[("agentproxy_agent_resumes_total", labels(cause="api"))] == 0
    assert samples[("agentproxy_agent_resume_seconds_count", labels(cause="request"))] == 1
    assert samples[("agentproxy_agents", labels(status="ready"))] == 1
    assert samples[("agentproxy_agents", labels(status="suspended"))] == 0


async def test_with_resume_wait_the_request_waits_for_the_agent_and_is_forwarded(
        make_api, settings, backend: MemoryBackend, upstream: Upstream):
    settings.agents.resume_wait = 10.0
    api = await make_api()
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    assert (await api.post(f"{AGENT}/suspend")).status == 200
    backend.upstream = None

    async def ready_soon() -> None:
        while backend.agents["a1"].status is not AgentStatus.PENDING:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        backend.set_state("s1", "a1", status=AgentStatus.STARTING)
        backend.set_state("s1", "a1", status=AgentStatus.READY, upstream=upstream.url)

    helper = asyncio.create_task(ready_soon())
    response = await api.get(f"{AGENT}/api/status")
    await helper
    assert response.status == 200, await response.text()
    assert upstream.agent.requests[-1].raw_path == "/status"


async def test_with_resume_wait_an_agent_that_is_not_ready_in_time_is_a_503(make_api, settings,
                                                                             backend: MemoryBackend):
    settings.agents.resume_wait = 0.3
    api = await make_api()
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    assert (await api.post(f"{AGENT}/suspend")).status == 200
    backend.upstream = None
    response = await api.post(f"{AGENT}/api/message", json={"content": "hi", "type": "user"})
    error = await error_of(response, 503)
    assert error["code"] == "agent_resuming" and response.headers["Retry-After"] == "2"
    # An agent that is merely not ready (and was not suspended) gets the usual 503 after the wait.
    backend.set_state("s1", "a1", status=AgentStatus.FAILED)
    failed = await error_of(await api.get(f"{AGENT}/api/status"), 503)
    assert failed["code"] == "agent_not_ready" and "status failed" in failed["message"]


async def test_a_create_with_the_same_spec_resumes_over_http(api, backend: MemoryBackend):
    body = {"id": "a1", "message": "hi"}
    assert (await api.post("/sessions/s1/agents", json=body)).status == 201
    assert (await api.post(f"{AGENT}/suspend")).status == 200
    again = await api.post("/sessions/s1/agents", json=body)
    assert again.status == 200 and (await again.json())["status"] == "ready"
    await error_of(await api.post("/sessions/s1/agents", json={"id": "a1", "message": "other"}), 409)
    samples = await scrape(api)
    assert samples[("agentproxy_agent_resumes_total", labels(cause="api"))] == 1


async def test_delete_of_a_suspended_agent(api, backend: MemoryBackend):
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    assert (await api.post(f"{AGENT}/suspend")).status == 200
    response = await api.delete(f"{AGENT}?purge=true")
    assert response.status == 200
    assert backend.deleted == [("s1", "a1", True)] and "a1" not in backend.data


async def test_many_first_requests_resume_the_agent_once(api, backend: MemoryBackend):
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    assert (await api.post(f"{AGENT}/suspend")).status == 200
    backend.upstream = None
    answers = await asyncio.gather(*(api.get(f"{AGENT}/api/status") for _ in range(20)))
    assert {a.status for a in answers} == {503}
    samples = await scrape(api)
    assert samples[("agentproxy_agent_resumes_total", labels(cause="request"))] == 1
