"""An agent waiting for its user: shown ``waiting_input`` with its question, listed by that
status, and a message sent to it through the proxy answers it (on both of the proxy's paths:
a waiting agent's requests take aiohttp's, which tells the backend)."""

from __future__ import annotations

from agentproxy.backends.base import AgentStatus

from .memory_backend import MemoryBackend

QUESTION = "Claude needs your permission to use Bash"


class Answerable(MemoryBackend):
    """The in-memory backend, whose agents' questions a message answers."""

    def answered(self, agent_id: str) -> None:
        state = self.agents[agent_id]
        self.set_state(state.session, agent_id, question=None)


async def test_a_message_answers_the_question(make_api, upstream):
    backend = Answerable(upstream=upstream.url)
    for fast in (True, False):
        api = await make_api(backend_=backend, fast=fast)
        await api.post("/sessions/s1/agents", json={"id": "a1"})
        backend.set_state("s1", "a1", question=QUESTION)
        agent = await (await api.get("/sessions/s1/agents/a1")).json()
        assert (agent["status"], agent["question"]) == ("waiting_input", QUESTION)
        listed = await (await api.get("/agents?status=waiting_input")).json()
        assert [a["id"] for a in listed["agents"]] == ["a1"]
        assert (await (await api.get("/agents?status=ready")).json())["agents"] == []
        # Reading does not answer; a message does.
        assert (await api.get("/sessions/s1/agents/a1/api/status")).status == 200
        assert backend.agents["a1"].question == QUESTION
        response = await api.post("/sessions/s1/agents/a1/api/message", json={"content": "\r", "type": "raw"})
        assert response.status < 500
        agent = await (await api.get("/sessions/s1/agents/a1")).json()
        assert (agent["status"], agent["question"]) == ("ready", None)
        await api.delete("/sessions/s1/agents/a1")


class Reporting(MemoryBackend):
    """The in-memory backend, taking reports as k8s mode does once it knows which agent a
    token is for (here: the token is the agent's id; the real review is in the k8s tests)."""

    async def report_question(self, token: str, question: str | None):
        state = self.agents[token]
        return self.set_state(state.session, state.id, question=question)


async def test_the_hooks_route_needs_the_pods_token_and_a_question(make_api):
    backend = Reporting()
    api = await make_api(api_keys=[{"name": "k", "sha256": "0" * 64}], backend_=backend)
    # No API key is needed (the report carries the pod's token instead), but a token is.
    response = await api.post("/hooks/waiting", json={"question": QUESTION})
    assert response.status == 401
    assert (await response.json())["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    for body, field in (({"question": 3}, "question"), ({}, "question")):
        response = await api.post("/hooks/waiting", json=body, headers={"Authorization": "Bearer a1"})
        assert response.status == 422 and (await response.json())["error"]["field"] == field
    response = await api.post("/hooks/waiting", data=b"{", headers={"Authorization": "Bearer a1",
                                                                     "Content-Type": "application/json"})
    assert response.status == 400
    response = await api.post("/hooks/waiting", data=b"x" * 20000, headers={"Authorization": "Bearer a1",
                                                                            "Content-Type": "application/json"})
    assert response.status == 413


async def test_a_report_shows_the_question_and_null_ends_it(make_api):
    backend = Reporting()
    api = await make_api(backend_=backend)
    assert (await api.post("/sessions/s1/agents", json={"id": "a1"})).status == 201
    backend.set_state("s1", "a1", status=AgentStatus.READY)
    response = await api.post("/hooks/waiting", json={"question": QUESTION}, headers={"Authorization": "Bearer a1"})
    assert response.status == 200, await response.text()
    assert await response.json() == {"id": "a1", "session": "s1", "status": "waiting_input", "question": QUESTION}
    response = await api.post("/hooks/waiting", json={"question": None}, headers={"Authorization": "Bearer a1"})
    assert (await response.json())["status"] == "ready"


async def test_a_proxy_that_takes_no_reports_answers_404(make_api):
    api = await make_api()  # the base class's answer: local mode, or k8s mode without waiting_url
    response = await api.post("/hooks/waiting", json={"question": QUESTION}, headers={"Authorization": "Bearer x"})
    assert response.status == 404
    assert "k8s_mode.waiting_url" in (await response.json())["error"]["message"]
