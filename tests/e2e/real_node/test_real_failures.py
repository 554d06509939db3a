"""Limits and failures of real pods, with the platform's reasons in the agent's
status: a memory limit the agent outgrows (OOMKilled, at once and in the middle of a
conversation, which comes back), an image that is not on the node (pull policy Never),
and a command that exits at once (crash loop)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..kube import get, wait_for
from .rn import pod_of

pytestmark = pytest.mark.real_node
EAT_FLAG = "eat-memory"
COMMANDS = {
    # Allocates 300 MiB at once, past the 64Mi limit the test gives it.
    "hog": ["python3", "-c", "b = bytearray(300 * 1024 * 1024); import time; time.sleep(600)"],
    "quits": ["python3", "-c", "raise SystemExit(3)"],
    # The echo demo agent, which outgrows its memory limit once a file appears in its work
    # directory (the volume's root): the test's way into a running pod to make it grow.
    "grows": ["python3", "-c", "\n".join([
        "import os, runpy, threading, time",
        "def grow():",
        f"    while not os.path.exists({EAT_FLAG!r}):",
        "        time.sleep(0.2)",
        f"    os.remove({EAT_FLAG!r})",
        "    held = b'x' * (400 * 1024 * 1024)",
        "    time.sleep(600)",
        "threading.Thread(target=grow, daemon=True).start()",
        "runpy.run_module('agentproxy.demo_agent', run_name='__main__')"])],
}


async def test_an_agent_past_its_memory_limit_is_oom_killed(serve):
    server = await serve({"agents": {"commands": COMMANDS}})
    await server.create("s", {"id": "hog", "agent": "hog",
                              "resources": {"memory_request": "64Mi", "memory_limit": "64Mi"}})
    agent = await server.until("s", "hog", "failed", "OOMKilled")
    assert "OOMKilled" in agent["message"] and agent["restarts"] >= 1


async def test_an_image_that_is_not_on_the_node_fails_with_the_image_reason(serve):
    server = await serve({"k8s_mode": {"image": "agentapi-proxy:not-on-this-node"}})
    await server.create("s", {"id": "noimage"})
    agent = await server.until("s", "noimage", "failed", "ErrImageNeverPull")
    assert "agentapi-proxy:not-on-this-node" in agent["message"]


async def test_a_command_that_exits_at_once_goes_to_crash_loop(serve):
    server = await serve({"agents": {"commands": COMMANDS}})
    await server.create("s", {"id": "quits", "agent": "quits"})
    agent = await server.until("s", "quits", "failed", "CrashLoopBackOff")
    assert "back-off" in agent["message"] and "last exit: Error (exit code 1)" in agent["message"]


async def test_an_agent_oom_killed_in_a_conversation_comes_back_with_it(serve, api, rn_namespace):
    server = await serve({"agents": {"commands": COMMANDS}})
    await server.create("s", {"id": "grows", "agent": "grows",
                              "resources": {"memory_request": "200Mi", "memory_limit": "200Mi"}})
    await server.until("s", "grows", "ready", timeout=180)
    await server.say("s", "grows", "remember me")
    pvc = await get(api, f"/api/v1/namespaces/{rn_namespace}/persistentvolumeclaims/data-agent-grows-0")
    pv = await get(api, f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    volume = Path(pv["spec"]["local"]["path"])
    state = volume / ".agentproxy" / "agentapi-state.json"

    async def saved():
        return state.exists() and "remember me" in state.read_text(errors="replace")
    await wait_for(saved, "the launcher to have agentapi save the conversation on the volume")

    (volume / EAT_FLAG).write_text("")

    async def oom_killed():
        status = (await pod_of(api, rn_namespace, "grows"))["status"]["containerStatuses"][0]
        last = (status.get("lastState") or {}).get("terminated") or {}
        return status if status["restartCount"] >= 1 and last.get("reason") == "OOMKilled" else None
    await wait_for(oom_killed, "the container to be OOM-killed and started again", timeout=180)
    await server.until("s", "grows", "ready", timeout=180)
    await server.until_said("s", "grows", "remember me")
    assert (await server.messages("s", "grows")).count(("user", "remember me")) == 1
