"""Helpers of the real-node subset: settings, the ``agentproxy serve`` client,
the cluster script, and looking at pods from the host."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import kr8s
from prometheus_client.parser import text_string_to_metric_families

from tests import conversation
from tests.conversation import exchanges

from ..kube import get, wait_for

ROOT = Path(__file__).resolve().parents[3]

NODE = "real-node-0"
LABEL = "agentproxy.io/real-node"
STORAGE_CLASS = "local-path"
# What every real-node agent gets: the imported image, never pulled; local-path
# volumes; a small CPU request, so that 2 cores hold 20 agents.
BASE_SETTINGS = {"k8s_mode": {"enabled": True, "pod_address": "pod_ip", "image_pull_policy": "Never",
                              "storage_class": STORAGE_CLASS, "resources": {"cpu_request": "50m"}}}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Server:
    """A running ``agentproxy serve`` in k8s mode and the calls the tests make to it."""

    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base = base
        self.http = http

    async def create(self, session: str, body: dict) -> dict:
        async with self.http.post(f"{self.base}/sessions/{session}/agents", json=body) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()

    async def agent(self, session: str, agent_id: str) -> dict | None:
        async with self.http.get(f"{self.base}/sessions/{session}/agents/{agent_id}") as resp:
            return await resp.json() if resp.status == 200 else None

    async def delete(self, session: str, agent_id: str, purge: bool = False) -> None:
        url = f"{self.base}/sessions/{session}/agents/{agent_id}" + ("?purge=true" if purge else "")
        async with self.http.delete(url) as resp:
            assert resp.status in (200, 202, 204), await resp.text()

    async def until(self, session: str, agent_id: str, status: str, reason: str | None = None,
                    timeout: float = 120) -> dict:
        """The agent once it has ``status`` (and ``reason``, when given)."""
        async def check():
            a = await self.agent(session, agent_id)
            return a if a and a["status"] == status and (reason is None or a["reason"] == reason) else None
        return await wait_for(check, f"agent {agent_id} to be {status} {reason or ''}", timeout)

    def route(self, session: str, agent_id: str) -> str:
        """The proxy route to the agent's agentapi."""
        return f"{self.base}/sessions/{session}/agents/{agent_id}/api"

    async def messages(self, session: str, agent_id: str) -> list[tuple[str, str]]:
        """(role, text) of the agent's conversation, startup screen excluded."""
        return exchanges(await conversation.messages(self.http, self.route(session, agent_id)))

    async def idle(self, session: str, agent_id: str) -> None:
        """Until agentapi reports the agent idle: it takes user messages only then."""
        await conversation.wait_stable(self.http, self.route(session, agent_id), timeout=60)

    async def say(self, session: str, agent_id: str, text: str) -> None:
        """Send a user message once the agent is idle, and wait for its echo."""
        await conversation.say(self.http, self.route(session, agent_id), text)

    async def until_said(self, session: str, agent_id: str, text: str, timeout: float = 60) -> None:
        """Wait until the conversation holds ``text`` and its echo."""
        found = await conversation.agent_said(self.http, self.route(session, agent_id), f"echo: {text}", timeout)
        assert ("user", text) in exchanges(found), exchanges(found)


async def cluster(action: str, component: str) -> None:
    """``python -m testenv.cluster ACTION COMPONENT`` for the cluster the suite runs
    against: the one whose directory holds $KUBECONFIG."""
    env = {**os.environ, "AGENTPROXY_CLUSTER_DIR": str(Path(os.environ["KUBECONFIG"]).resolve().parent)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "testenv.cluster", action, component, env=env,
                                                cwd=ROOT)
    assert await proc.wait() == 0, f"cluster.py {action} {component} failed"


async def pod_of(api, namespace: str, agent_id: str) -> dict:
    pod = await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-{agent_id}-0")
    assert pod is not None, f"no pod for agent {agent_id}"
    return pod


def container_processes(container_id: str) -> list[int]:
    """Pids of a container's processes, from the host's /proc (by their cgroup)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if any(line.endswith(f"/{container_id}") for line in (entry / "cgroup").read_text().splitlines()):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


async def readiness_probes_passed(api, namespace: str, pod: str) -> float:
    """Successful readiness probes of ``pod`` counted by the node's kubelet process that runs now
    (its ``/metrics/probes``, through the API server's node proxy): zero for a kubelet that has
    not probed it since it started, or that does not answer yet."""
    path = f"/api/v1/nodes/{NODE}/proxy/metrics/probes"
    base, _, rest = path.lstrip("/").partition("/")
    try:
        async with api.call_api("GET", version="", base=f"/{base}", url=rest) as resp:
            text = resp.text
    except kr8s.ServerError:  # the new kubelet's server is not listening yet (503 from the API server)
        return 0.0
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (sample.name == "prober_probe_total" and labels.get("probe_type") == "Readiness"
                    and labels.get("result") == "successful" and labels.get("namespace") == namespace
                    and labels.get("pod") == pod):
                total += sample.value
    return total
