"""`agentproxy serve` in k8s mode, over real HTTP, against a real API server.

The full data path is exercised: the API creates the agent's objects, kwok
makes its pod Ready with a loopback IP, the real agentapi runs with the pod's
container command, arguments and environment (``standin.py``), and requests to
the proxy route reach it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conversation import agent_said, exchanges, say, wait_answering

from .kube import get, request, wait_for
from .standin import ContainerStandIn


@pytest.fixture
async def server(servers):
    """A real `agentproxy serve` process in k8s mode for the test's namespace."""
    return await servers.start("agents.first_message_timeout=2s")


async def test_the_documented_curl_creates_an_agent(server):
    base, http = server.base, server.http
    async with http.post(f"{base}/sessions/my-session/agents") as resp:
        assert resp.status == 201, await resp.text()
        agent = await resp.json()
    assert agent["session"] == "my-session" and agent["mode"] == "k8s" and agent["status"] == "pending"
    assert agent["details"]["statefulset"] == f"agent-{agent['id']}"
    assert agent["url"].endswith(f"/sessions/my-session/agents/{agent['id']}/api/")


async def test_first_message_and_conversation_through_the_proxy_to_the_pod(server, api, namespace, pod_cidr,
                                                                           tmp_path):
    """The real agentapi runs as the pod's container would (see standin.py): the first
    message arrives once, the proxy route reaches it, and a recreated pod keeps the
    conversation on its volume."""
    if pod_cidr is None or not pod_cidr.is_loopback:
        pytest.skip("needs pods with loopback IPs, so that a local process can stand in for the container")
    base, http = server.base, server.http
    async with http.post(f"{base}/sessions/s1/agents", json={"id": "routed", "message": "hello"}) as resp:
        assert resp.status == 201, await resp.text()

    # Ready as far as the cluster knows, but no agentapi runs yet: the first message is late.
    async def pending():
        agent = await server.agent("s1", "routed")
        return agent if agent and agent["reason"] == "FirstMessagePending" else None
    agent = await wait_for(pending, "the first message to be reported as pending")
    assert agent["status"] == "ready" and "not delivered" in agent["message"]
    # Before anything listens on the pod's address, the proxy answers 502 JSON.
    async with http.get(f"{base}/sessions/s1/agents/routed/api/status") as resp:
        assert resp.status == 502
        assert (await resp.json())["error"]["code"]

    api_route = f"{base}/sessions/s1/agents/routed/api"
    volumes = tmp_path / "volumes"
    with await ContainerStandIn.of_pod(api, namespace, "agent-routed-0", volumes) as container:
        await wait_answering(http, api_route)
        first = await agent_said(http, api_route, "echo: hello")
        assert exchanges(first) == [("user", "hello"), ("agent", "echo: hello")], container.output()

        async def delivered():
            agent = await server.agent("s1", "routed")
            return agent if agent and agent["reason"] is None else None
        await wait_for(delivered, "the pending reason to clear once the message is delivered")
        await say(http, api_route, "second")
    # The container stopped as the kubelet stops it (SIGTERM): agentapi saved its state on the volume.
    state_file = volumes / "data-agent-routed-0" / ".agentproxy" / "agentapi-state.json"
    assert "echo: second" in state_file.read_text()

    old_uid = (await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-routed-0"))["metadata"]["uid"]
    await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/pods/agent-routed-0",
                  body={"gracePeriodSeconds": 0})

    async def recreated():
        pod = await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-routed-0")
        agent = await server.agent("s1", "routed")
        return pod if pod and pod["metadata"]["uid"] != old_uid and agent and agent["status"] == "ready" else None
    await wait_for(recreated, "the StatefulSet to recreate the pod")
    with await ContainerStandIn.of_pod(api, namespace, "agent-routed-0", volumes) as container:
        await wait_answering(http, api_route)
        again = await agent_said(http, api_route, "echo: second")
        assert exchanges(again) == [("user", "hello"), ("agent", "echo: hello"),
                                    ("user", "second"), ("agent", "echo: second")], container.output()


async def test_events_list_and_delete_over_http(server):
    base, http = server.base, server.http
    seen = []

    async def watch():
        async with http.get(f"{base}/events?session=s2") as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            async for raw in resp.content:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    seen.append((event["event"], event["id"], event["status"]))
                    if event["event"] == "deleted":
                        return
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.3)
    async with http.post(f"{base}/sessions/s2/agents", json={"id": "evented"}) as resp:
        assert resp.status == 201
    async with http.post(f"{base}/sessions/s2/agents", json={"id": "evented"}) as resp:
        assert resp.status == 200  # an equal repeat is idempotent
    async with http.post(f"{base}/sessions/s2/agents", json={"id": "evented", "env": {"A": "b"}}) as resp:
        assert resp.status == 409
        assert (await resp.json())["error"]["code"] == "conflict"

    async def ready():
        agent = await server.agent("s2", "evented")
        return agent if agent and agent["status"] == "ready" else None
    await wait_for(ready, "the agent to be ready")
    async with http.get(f"{base}/agents?session=s2") as resp:
        assert [a["id"] for a in (await resp.json())["agents"]] == ["evented"]
    async with http.delete(f"{base}/sessions/s2/agents/evented?purge=true") as resp:
        assert resp.status in (200, 202), await resp.text()
    await asyncio.wait_for(watcher, 60)
    assert seen[0][:2] == ("added", "evented")
    assert ("modified", "evented", "ready") in seen
    assert seen[-1][:2] == ("deleted", "evented")
    async with http.get(f"{base}/sessions/s2/agents/evented") as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
