"""Start progress in k8s mode through `agentproxy serve`: the steps a create goes through on
kwok's node arrive in order and end in ``ready``, a late subscriber gets them replayed, and a
start that cannot go on (a StorageClass that does not exist) ends with the agent's reason."""

from __future__ import annotations

import json

import aiohttp

from kube import wait_for
from served import Served

TIMEOUT = aiohttp.ClientTimeout(total=120)


async def steps_of(server: Served, session: str, agent_id: str) -> list[dict]:
    """Every step of the agent's start, read until its stream ends."""
    async with server.http.get(f"{server.base}/sessions/{session}/agents/{agent_id}/progress",
                               timeout=TIMEOUT) as resp:
        assert resp.status == 200, await resp.text()
        body = (await resp.read()).decode()
    return [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]


async def create(server: Served, agent_id: str) -> None:
    async with server.http.post(f"{server.base}/sessions/s1/agents", json={"id": agent_id}) as resp:
        assert resp.status == 201, await resp.text()


async def test_a_start_on_kwok_goes_through_its_steps_to_ready(servers):
    server = await servers.start()
    await create(server, "p1")
    steps = await steps_of(server, "s1", "p1")  # subscribed at once: live
    names = [s["step"] for s in steps]
    assert names[0] == "applied" and names[-1] == "ready", steps
    assert {"scheduled", "volume_bound", "container_started", "agentapi_answering"} <= set(names), steps
    assert names.index("scheduled") < names.index("container_started") < names.index("agentapi_answering")
    assert [s["index"] for s in steps] == list(range(len(steps)))
    assert [s["at"] for s in steps] == sorted(s["at"] for s in steps)
    assert all(s["kind"] == "start" for s in steps)
    agent = await server.agent("s1", "p1")
    assert agent is not None and agent["status"] == "ready"
    # A late subscriber gets the same start replayed; so does a second proxy that never saw the create.
    assert await steps_of(server, "s1", "p1") == steps
    other = await servers.start()
    replayed = [s["step"] for s in await steps_of(other, "s1", "p1")]
    assert replayed[0] == "applied" and replayed[-1] == "ready"
    metrics = await server.metrics()
    key = ("agentproxy_agent_start_step_seconds_count", (("kind", "start"), ("step", "container_started")))
    assert metrics.get(key) == 1.0


async def test_a_start_without_its_storage_class_ends_with_the_binders_reason(servers):
    server = await servers.start("k8s_mode.storage_class=no-such-class")
    await create(server, "nostore")
    steps = await steps_of(server, "s1", "nostore")
    assert steps[0]["step"] == "applied" and steps[-1]["step"] == "failed", steps
    agent = await wait_for(lambda: server.agent("s1", "nostore"), "the agent")
    assert steps[-1]["reason"] == agent["reason"] == "ProvisioningFailed"
    assert steps[-1]["message"] == agent["message"]
