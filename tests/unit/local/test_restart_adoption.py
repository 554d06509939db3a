"""A restarted `agentproxy serve` serves at once and adopts its agents in the background:
agents not adopted yet are `starting` and their requests get 503 with Retry-After, and
once their agentapi answers, every one is ready again with its pid and its conversation.

The agentapi processes are stopped (SIGSTOP) across the restart, so that adoption is
observably still under way while the proxy already answers; they are continued afterwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from agentproxy.backends.local.process import autogroups_enabled
from agentproxy.settings.schema import LocalModeSettings
from tests.conversation import AGENTAPI_HOST, agent_said, exchanges, messages

from .serve_process import HANG_GUARD, SESSION, post
from .support import autogroup_of, kernel_allows, lowered, processes_in, wait_until

AGENTS = ("ada", "bob", "cyd")
NICE = LocalModeSettings().agent_nice


def set_autogroup(pid: int, nice: int) -> bool:
    """Set the nice value of the autogroup of ``pid``; False when the kernel asks to retry."""
    try:
        with open(f"/proc/{pid}/autogroup", "w", encoding="ascii") as out:
            out.write(str(nice))
    except BlockingIOError:
        return False
    return True


async def agents(client: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    async with client.get(f"{base}/sessions/{SESSION}/agents") as response:
        assert response.status == 200, await response.text()
        return {a["id"]: a for a in (await response.json())["agents"]}


async def all_ready(client: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        listed = await agents(client, base)
        if len(listed) == len(AGENTS) and all(a["status"] == "ready" for a in listed.values()):
            return listed
        assert time.monotonic() < deadline, f"not all ready: {listed}"
        await asyncio.sleep(0.05)


async def test_a_restarted_proxy_serves_at_once_and_adopts_every_agent_in_the_background(served):
    server, client = served
    server.env["AGENTAPI_LOCAL_MODE_AGENT_NICE"] = str(NICE)  # the default; the tests run agents at AGENT_NICE
    await server.start(client)
    for agent_id in AGENTS:
        await post(client, f"{server.base}/sessions/{SESSION}/agents", {"id": agent_id, "message": "hello"}, 201)
    before = await all_ready(client, server.base)
    for agent_id in AGENTS:
        await agent_said(client, f"{server.route(agent_id)}/api", "echo: hello")
    pids = {agent_id: a["details"]["pid"] for agent_id, a in before.items()}
    if autogroups_enabled():
        # Started by the proxy's helper, all in its session: one scheduling group, however
        # many agents, so that they never crowd out the proxy (least of all a restarted one).
        sessions = {os.getsid(pid) for pid in pids.values()}
        assert len(sessions) == 1 and os.getsid(0) not in sessions, sessions
        # That group is below the proxy, as one program at agent_nice.
        assert {autogroup_of(pid) for pid in pids.values()} == {NICE}

    server.kill()  # SIGKILL: no shutdown; the agents keep running
    if autogroups_enabled():
        # As an earlier version left its agents: their one group at an ordinary weight (a nice
        # value of 0 or more needs no privilege). The restarted proxy puts it below itself again.
        assert kernel_allows(lambda: set_autogroup(pids["ada"], 0))
        assert {autogroup_of(pid) for pid in pids.values()} == {0}
    stopped = list(pids.values())
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)  # their agentapi cannot answer until continued
    try:
        await server.start(client)  # returns once /readyz answers
        async with client.get(f"{server.base}/healthz") as response:
            assert response.status == 200
        during = await agents(client, server.base)
        assert set(during) == set(AGENTS)
        for agent in during.values():
            assert agent["status"] == "starting" and agent["reason"] in ("Adopting", "Adopted"), agent
        async with client.get(f"{server.route('ada')}/api/messages", headers=AGENTAPI_HOST) as response:
            assert response.status == 503 and response.headers["Retry-After"] == "2", await response.text()
            assert (await response.json())["error"]["code"] == "agent_not_ready"
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)

    after = await all_ready(client, server.base)
    for agent_id, agent in after.items():
        details = agent["details"]
        assert details["pid"] == pids[agent_id] and details["adopted"] is True, agent
        assert agent["restarts"] == 0, agent
        # Nothing started twice: the one agentapi and its agent, no second run.
        servers = [p.pid for p in processes_in(Path(details["work_dir"])) if "--state-file" in p.cmdline()]
        assert servers == [pids[agent_id]], servers
        # Below the proxy's CPU priority (local_mode.agent_nice), so that it never starves a proxy.
        assert psutil.Process(pids[agent_id]).nice() == lowered(NICE)
        # Its group (every agent's), and the agent program in the session (autogroup) of
        # agentapi's terminal, once sampled.
        for proc in processes_in(Path(details["work_dir"])):
            await wait_until(lambda: autogroup_of(proc.pid) in (None, NICE) and proc.nice() == lowered(NICE),  # noqa: B023
                             what=f"{proc.cmdline()} at nice {NICE}, its autogroup too")
        assert exchanges(await messages(client, f"{server.route(agent_id)}/api")) == \
            [("user", "hello"), ("agent", "echo: hello")]
