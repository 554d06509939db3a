"""The README's curl, through `agentproxy serve` in k8s mode, to a real pod.

The StatefulSet's pod runs the real agentapi around the echo demo agent,
becomes Ready through the template's readiness probe, and messages reach it
through the proxy route at the pod's IP on the node's bridge.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess

import pytest

from ..kube import wait_for
from .rn import NODE, pod_of

pytestmark = pytest.mark.real_node
BRIDGE_NET = ipaddress.ip_network("198.18.0.0/16")


def curl(*args: str) -> tuple[int, dict]:
    """Run curl as the README does; (HTTP status, JSON body)."""
    out = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    body, _, code = out.stdout.rpartition("\n")
    return int(code), json.loads(body) if body.strip() else {}


async def test_documented_curl_talks_to_real_agentapi_in_a_real_pod(serve, api, rn_namespace):
    server = await serve()
    base = server.base
    status, agent = curl("-X", "POST", f"{base}/sessions/my-session/agents", "-H", "Content-Type: application/json",
                         "-d", '{"id": "a1", "agent": "echo", "env": {"GIT_AUTHOR_NAME": "bot"}, '
                               '"message": "Fix the failing test"}')
    assert status == 201, agent
    assert agent["mode"] == "k8s" and agent["status"] in ("pending", "starting")

    async def ready():
        code, body = curl(f"{base}/sessions/my-session/agents/a1")
        return body if code == 200 and body["status"] == "ready" else None
    agent = await wait_for(ready, "agent a1 to be ready (the readiness probe passed)", 120)

    pod = await pod_of(api, rn_namespace, "a1")
    assert pod["spec"]["nodeName"] == NODE
    assert ipaddress.ip_address(pod["status"]["podIP"]) in BRIDGE_NET
    assert agent["details"]["pod_ip"] == pod["status"]["podIP"]
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0

    # The first message of the create request, sent by agentapi once the agent was ready.
    await server.until_said("my-session", "a1", "Fix the failing test")
    code, body = curl(f"{base}/sessions/my-session/agents/a1/api/messages")
    assert code == 200
    texts = [m["content"].strip() for m in body["messages"]]
    assert "echo: Fix the failing test" in texts

    await server.idle("my-session", "a1")
    code, body = curl("-X", "POST", f"{base}/sessions/my-session/agents/a1/api/message",
                      "-H", "Content-Type: application/json", "-d", '{"content": "hello pod", "type": "user"}')
    assert (code, body.get("ok")) == (200, True), body
    await server.until_said("my-session", "a1", "hello pod")

