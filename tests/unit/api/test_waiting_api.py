"""An agent waiting for its user: shown ``waiting_input`` with its question, listed by that
status, and a message sent to it through the proxy answers it (on both of the proxy's paths:
a waiting agent's requests take aiohttp's, which tells the backend)."""

from __future__ import annotations

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
