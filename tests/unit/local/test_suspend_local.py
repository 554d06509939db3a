"""Suspend, resume and idle culling in local mode, over HTTP, with the real agentapi and the
echo demo agent (`agentproxy serve` as a process of its own, so that it can be restarted).

A suspended agent has no process and no port; its work directory and conversation stay,
across a restart of the proxy too. It comes back, with its earlier messages, through a
resume or a proxied request; an agent nobody talks to is suspended by idle culling.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

from agentproxy.backends.local.ports import port_is_free
from tests.conversation import AGENTAPI_HOST, agent_said, exchanges, messages, say

from .serve_process import HANG_GUARD, SESSION, Server, post, state_file_holds
from .support import processes_in


async def metrics(client: aiohttp.ClientSession, server: Server) -> dict[tuple[str, tuple], float]:
    async with client.get(f"{server.base}/metrics") as response:
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def test_a_suspended_agent_keeps_its_conversation_and_comes_back(served):
    server, client = served
    await server.start(client)
    await post(client, f"{server.base}/sessions/{SESSION}/agents", {"id": "sleepy", "message": "hello"}, 201)
    agent = await _ready(client, server, "sleepy")
    api = f"{server.route('sleepy')}/api"
    await agent_said(client, api, "echo: hello")
    await say(client, api, "second")
    both = [("user", "hello"), ("agent", "echo: hello"), ("user", "second"), ("agent", "echo: second")]
    pid, port, work_dir = agent["details"]["pid"], agent["details"]["port"], Path(agent["details"]["work_dir"])

    suspended = await post(client, f"{server.route('sleepy')}/suspend")
    assert (suspended["status"], suspended["reason"]) == ("suspended", "Suspended")
    assert suspended["details"]["pid"] is None and suspended["details"]["port"] is None
    assert gone(pid) and not processes_in(work_dir)
    assert state_file_holds(work_dir, "echo: second")  # agentapi saved it on SIGTERM; the data stays
    assert port_is_free(port)

    # Suspension survives a restart of the proxy: nothing is started again.
    server.stop()
    await server.start(client)
    after = await _agent(client, server, "sleepy")
    assert (after["status"], after["reason"]) == ("suspended", "Suspended") and not processes_in(work_dir)
    assert (await post(client, f"{server.route('sleepy')}/suspend"))["status"] == "suspended"  # a no-op

    resumed = await post(client, f"{server.route('sleepy')}/resume")
    assert resumed["status"] in ("starting", "ready") and resumed["details"]["pid"] not in (None, pid)
    back = await _ready(client, server, "sleepy")
    # Ready means the conversation is back (agentapi loads it a moment after it answers), and
    # "hello" is not sent again.
    assert exchanges(await messages(client, api)) == both
    assert (await post(client, f"{server.route('sleepy')}/resume"))["details"]["pid"] == back["details"]["pid"]

    # A proxied request to a suspended agent resumes it: 503 with Retry-After until it is ready.
    await post(client, f"{server.route('sleepy')}/suspend")
    async with client.get(f"{api}/messages", headers=AGENTAPI_HOST) as response:
        assert response.status == 503 and response.headers["Retry-After"] == "2"
        assert (await response.json())["error"]["code"] == "agent_resuming"
    deadline = time.monotonic() + HANG_GUARD
    while True:
        async with client.get(f"{api}/status", headers=AGENTAPI_HOST) as response:
            if response.status == 200:
                break
            assert response.status == 503 and time.monotonic() < deadline, await response.text()
        await asyncio.sleep(0.1)
    assert exchanges(await agent_said(client, api, "echo: second")) == both

    samples = await metrics(client, server)  # of the second server process, which did not count the no-op
    assert samples[("agentproxy_agent_suspends_total", (("cause", "api"),))] == 1
    assert samples[("agentproxy_agent_resumes_total", (("cause", "api"),))] == 1
    assert samples[("agentproxy_agent_resumes_total", (("cause", "request"),))] == 1
    assert samples[("agentproxy_agent_resume_seconds_count", (("cause", "api"),))] == 1


async def test_idle_agents_are_suspended_and_a_request_waits_for_the_resume(served):
    server, client = served
    server.env["AGENTAPI_AGENTS_IDLE_TIMEOUT"] = "3s"
    server.env["AGENTAPI_AGENTS_RESUME_WAIT"] = "30s"
    await server.start(client)
    await post(client, f"{server.base}/sessions/{SESSION}/agents", {"id": "busy"}, 201)
    await post(client, f"{server.base}/sessions/{SESSION}/agents", {"id": "quiet", "message": "hello"}, 201)
    await _ready(client, server, "busy")
    await _ready(client, server, "quiet")
    quiet_api = f"{server.route('quiet')}/api"
    await agent_said(client, quiet_api, "echo: hello")

    # The busy agent gets a request every half second; the quiet one none.
    deadline = time.monotonic() + HANG_GUARD
    while (quiet := await _agent(client, server, "quiet"))["status"] != "suspended":
        assert time.monotonic() < deadline, f"the quiet agent was not culled: {quiet}"
        async with client.get(f"{server.route('busy')}/api/status", headers=AGENTAPI_HOST) as response:
            assert response.status == 200
        await asyncio.sleep(0.5)
    assert "suspended after being idle" in quiet["message"]
    assert (await _agent(client, server, "busy"))["status"] == "ready"

    # With agents.resume_wait, a request to it waits for the resume and is answered.
    async with client.get(f"{quiet_api}/status", headers=AGENTAPI_HOST) as response:
        assert response.status == 200, await response.text()
    assert (await _agent(client, server, "quiet"))["status"] == "ready"
    conversation = await agent_said(client, quiet_api, "echo: hello")
    assert exchanges(conversation) == [("user", "hello"), ("agent", "echo: hello")]
    samples = await metrics(client, server)
    # On a slow machine the quiet agent may go idle again between the requests above and be
    # culled and woken once more: every wake by a request follows a cull, and there was one.
    idle_suspends = samples[("agentproxy_agent_suspends_total", (("cause", "idle"),))]
    request_resumes = samples[("agentproxy_agent_resumes_total", (("cause", "request"),))]
    assert 1 <= request_resumes <= idle_suspends


async def test_the_request_that_wakes_an_agent_gets_its_whole_conversation(served):
    server, client = served
    server.env["AGENTAPI_AGENTS_RESUME_WAIT"] = "60s"
    await server.start(client)
    await post(client, f"{server.base}/sessions/{SESSION}/agents", {"id": "dozer", "message": "hello"}, 201)
    await _ready(client, server, "dozer")
    api = f"{server.route('dozer')}/api"
    await agent_said(client, api, "echo: hello")
    await say(client, api, "second")
    both = [("user", "hello"), ("agent", "echo: hello"), ("user", "second"), ("agent", "echo: second")]
    await post(client, f"{server.route('dozer')}/suspend")

    # The one request that wakes it waits until agentapi has loaded its state file: it is
    # answered with the conversation, never with agentapi's empty startup message alone.
    async with client.get(f"{api}/messages", headers=AGENTAPI_HOST) as response:
        assert response.status == 200, await response.text()
        assert exchanges((await response.json())["messages"]) == both
    agent = await _agent(client, server, "dozer")
    assert (agent["status"], agent["reason"]) == ("ready", None), agent

    # So does the first request after a restart of the proxy that finds it suspended.
    await post(client, f"{server.route('dozer')}/suspend")
    server.stop()
    await server.start(client)
    async with client.get(f"{api}/messages", headers=AGENTAPI_HOST) as response:
        assert response.status == 200, await response.text()
        assert exchanges((await response.json())["messages"]) == both


async def _agent(client: aiohttp.ClientSession, server: Server, agent_id: str) -> dict[str, Any]:
    async with client.get(server.route(agent_id)) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _ready(client: aiohttp.ClientSession, server: Server, agent_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_GUARD
    while (agent := await _agent(client, server, agent_id))["status"] != "ready":
        assert time.monotonic() < deadline, f"agent {agent_id} is not ready: {agent}"
        await asyncio.sleep(0.05)
    return agent
