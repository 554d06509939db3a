"""Fixtures of the real-node subset (``AGENTPROXY_REAL_NODE=1``, as in CI).

Agents here are real pods on the test cluster's real node: the real agentapi
around the echo demo agent, from the agent image imported into the node
(``bin/just agent-image``), with local-path volumes. Every pod of a test's
namespace is sent to that node by the namespace's annotations (PodNodeSelector
and PodTolerationRestriction admission), so agentproxy's own templates are used
unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import aiohttp
import pytest
import yaml

from testenv.ports import free_port

from ..kube import delete_namespace, get, request, wait_for
from .rn import BASE_SETTINGS, LABEL, NODE, Server, merge


@pytest.fixture
async def real_node(api) -> dict:
    """The real node, Ready; fails (never skips) when the cluster has none."""
    node = await get(api, f"/api/v1/nodes/{NODE}")
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in (node or {}).get("status", {}).get("conditions", []))
    if node is None or not ready:
        pytest.fail(f"the cluster has no Ready node {NODE}: start it with AGENTPROXY_REAL_NODE=1 bin/just cluster-up")
    return node


@pytest.fixture
async def rn_namespace(api, real_node):
    """A namespace enforcing the `restricted` Pod Security Standard whose pods
    all run on the real node; deleted after the test."""
    name = f"rn-{uuid.uuid4().hex[:8]}"
    await request(api, "POST", "/api/v1/namespaces", body={
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
            "annotations": {
                "scheduler.alpha.kubernetes.io/node-selector": f"{LABEL}=true",
                "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
                    [{"key": LABEL, "operator": "Equal", "value": "true", "effect": "NoSchedule"}]),
            },
        }})
    # Pods need the namespace's default ServiceAccount, which a controller creates.
    await wait_for(lambda: get(api, f"/api/v1/namespaces/{name}/serviceaccounts/default"),
                   f"the default ServiceAccount of {name}")
    yield name
    await delete_namespace(api, name)


@pytest.fixture
async def serve(kubeconfig, rn_namespace, tmp_path):
    """Start ``agentproxy serve`` in k8s mode for the test's namespace:
    ``await serve(settings)`` with settings merged over BASE_SETTINGS."""
    started: list[asyncio.subprocess.Process] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(settings: dict | None = None) -> Server:
        port = free_port()
        config = merge(BASE_SETTINGS, {"k8s_mode": {"namespace": rn_namespace}, "server": {"port": port}})
        config = merge(config, settings or {})
        path = tmp_path / f"agentproxy-{port}.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "KUBECONFIG": kubeconfig}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentproxy", "serve", "--config", str(path),
                                                    env=env, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        started.append(proc)
        http = aiohttp.ClientSession()
        sessions.append(http)
        base = f"http://127.0.0.1:{port}"

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
        return Server(base, http)

    yield start
    for http in sessions:
        await http.close()
    for proc in started:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


