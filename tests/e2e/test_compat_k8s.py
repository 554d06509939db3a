"""The agentapi-proxy layer of `agentproxy serve` in k8s mode, against a real API server.

A session started with ``POST /start`` is an agent's objects in the cluster (its
tags kept in the StatefulSet's spec annotation, its environment in the ConfigMap);
``/search`` finds it, ``/{id}/...`` reaches the pod's agentapi, and
``DELETE /sessions/{id}`` removes the objects and the data. As in
``test_api_k8s.py``, a process bound to the pod's loopback IP on port 3284 plays the
agentapi container (kwok runs no containers).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from kube import get, wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.unit.api.upstream import ImitationAgent  # noqa: E402

SESSION = "peer-sessions"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server(kubeconfig, namespace):
    """`agentproxy serve` in k8s mode with the agentapi-proxy layer on."""
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}, "KUBECONFIG": kubeconfig,
           "AGENTAPI_K8S_MODE_ENABLED": "true", "AGENTAPI_K8S_MODE_NAMESPACE": namespace,
           "AGENTAPI_K8S_MODE_POD_ADDRESS": "pod_ip", "AGENTAPI_SERVER_PORT": str(port),
           "AGENTAPI_COMPAT_AGENTAPI_PROXY_ENABLED": "true", "AGENTAPI_COMPAT_AGENTAPI_PROXY_SESSION": SESSION}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentproxy", "serve", env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        async def ready():
            if proc.returncode is not None:
                out = (await proc.stdout.read()).decode(errors="replace")
                raise AssertionError(f"agentproxy serve exited with {proc.returncode}:\n{out}")
            try:
                async with http.get(f"{base}/readyz") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False
        await wait_for(ready, "agentproxy serve to be ready", timeout=60)
        yield base, http
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 20)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


async def test_a_peer_session_is_an_agent_in_the_cluster(server, api, namespace, pod_cidr):
    base, http = server
    async with http.post(f"{base}/start", json={"environment": {"GIT_AUTHOR_NAME": "bot"}, "message": "hello",
                                               "tags": {"team": "red"}}) as resp:
        assert resp.status == 200, await resp.text()
        session_id = (await resp.json())["session_id"]

    sts = await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-{session_id}")
    spec = json.loads(sts["metadata"]["annotations"]["agentproxy.io/spec"])
    assert spec["session"] == SESSION and spec["tags"] == {"team": "red"} and spec["message"] == "hello"
    config = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-{session_id}-config")
    assert config["data"]["GIT_AUTHOR_NAME"] == "bot"

    async def found_ready():
        async with http.get(f"{base}/sessions/{SESSION}/agents/{session_id}") as resp:
            agent = await resp.json()
        return agent if agent["status"] == "ready" else None
    agent = await wait_for(found_ready, "the agent to be ready")
    async with http.get(f"{base}/search?tag.team=red&status=active") as resp:
        sessions = (await resp.json())["sessions"]
    assert [(s["session_id"], s["user_id"], s["port"]) for s in sessions] == [(session_id, "anonymous", 3284)]
    async with http.get(f"{base}/search?tag.team=blue") as resp:
        assert (await resp.json())["sessions"] == []

    if pod_cidr is not None and pod_cidr.is_loopback:
        imitation = ImitationAgent()
        runner = web.AppRunner(imitation.app())
        await runner.setup()
        await web.TCPSite(runner, agent["details"]["pod_ip"], 3284).start()
        try:
            async with http.get(f"{base}/{session_id}/status") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "stable"
                assert resp.headers["Access-Control-Allow-Origin"] == "*"
        finally:
            await runner.cleanup()

    async with http.delete(f"{base}/sessions/{session_id}") as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "terminated"

    async def gone():
        sts = await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-{session_id}")
        pvc = await get(api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-{session_id}-0")
        return sts is None and pvc is None
    await wait_for(gone, "the StatefulSet and the data volume to be deleted")
    async with http.get(f"{base}/search") as resp:
        assert (await resp.json())["sessions"] == []
