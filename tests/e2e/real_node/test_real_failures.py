"""Limits and failures of real pods, with the platform's reasons in the agent's
status: a memory limit the agent outgrows (OOMKilled), an image that is not
on the node (pull policy Never), and a command that exits at once (crash loop)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.real_node
COMMANDS = {
    # Allocates 300 MiB at once, past the 64Mi limit the test gives it.
    "hog": ["python3", "-c", "b = bytearray(300 * 1024 * 1024); import time; time.sleep(600)"],
    "quits": ["python3", "-c", "raise SystemExit(3)"],
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
