"""The agentapi-proxy layer of `agentproxy serve` in k8s mode, against a real API server.

A session started with ``POST /start`` is an agent's objects in the cluster (its
tags kept in the StatefulSet's spec annotation, its environment in the ConfigMap);
``/search`` finds it, ``/{id}/...`` reaches the pod's agentapi, and
``DELETE /sessions/{id}`` removes the objects and the data. As in
``test_api_k8s.py``, the real agentapi started with the pod's container command,
arguments and environment stands in for the container (kwok runs no containers).
"""

from __future__ import annotations

import json

import pytest

from tests.conversation import agent_said, exchanges, wait_answering, wait_stable

from .kube import get, wait_for
from .standin import ContainerStandIn

SESSION = "peer-sessions"


@pytest.fixture
async def server(servers):
    """`agentproxy serve` in k8s mode with the agentapi-proxy layer on."""
    return await servers.start("compat.agentapi_proxy.enabled=true", f"compat.agentapi_proxy.session={SESSION}")


async def test_a_peer_session_is_an_agent_in_the_cluster(server, api, namespace, pod_cidr, tmp_path):
    base, http = server.base, server.http
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
    await wait_for(found_ready, "the agent to be ready")
    async with http.get(f"{base}/search?tag.team=red&status=active") as resp:
        sessions = (await resp.json())["sessions"]
    assert [(s["session_id"], s["user_id"], s["port"]) for s in sessions] == [(session_id, "anonymous", 3284)]
    async with http.get(f"{base}/search?tag.team=blue") as resp:
        assert (await resp.json())["sessions"] == []

    if pod_cidr is not None and pod_cidr.is_loopback:
        # The real agentapi runs as the pod's container would (see standin.py): the first
        # message of /start reaches it, and the peer's route /{id}/... answers as agentapi.
        route = f"{base}/{session_id}"
        with await ContainerStandIn.of_pod(api, namespace, f"agent-{session_id}-0", tmp_path / "volumes") as container:
            await wait_answering(http, route)
            said = await agent_said(http, route, "echo: hello")
            assert exchanges(said) == [("user", "hello"), ("agent", "echo: hello")], container.output()
            await wait_stable(http, route)  # the screen settles a moment after the answer
            async with http.get(f"{route}/status") as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "stable"
                assert resp.headers["Access-Control-Allow-Origin"] == "*"

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
