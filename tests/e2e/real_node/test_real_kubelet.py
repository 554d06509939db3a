"""The kubelet killed and started again: the node's pods keep running (their
containers belong to containerd's shims, not to the kubelet) and keep answering
through the proxy; the kubelet takes them over again without restarting them."""

from __future__ import annotations

import pytest

from kube import get, wait_for
from rn import NODE, cluster, container_processes, pod_of

pytestmark = pytest.mark.real_node


async def test_agents_keep_answering_while_the_kubelet_is_killed_and_restarted(serve, api, rn_namespace):
    server = await serve()
    await server.create("s", {"id": "steady"})
    await server.until("s", "steady", "ready")
    await server.say("s", "steady", "before")
    before = await pod_of(api, rn_namespace, "steady")
    container = before["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    pids = container_processes(container)

    await cluster("kill", "kubelet")
    try:
        await server.say("s", "steady", "while the kubelet is down")
        assert container_processes(container) == pids
    finally:
        await cluster("start", "kubelet")

    async def node_ready():
        node = await get(api, f"/api/v1/nodes/{NODE}")
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    await wait_for(node_ready, "the node to be Ready again")
    # A new kubelet knows no probe results yet: until its first readiness probe
    # (run at once) it may report the pod not ready for a moment.
    await server.until("s", "steady", "ready", timeout=30)
    await server.say("s", "steady", "after")
    after = await pod_of(api, rn_namespace, "steady")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    status = after["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0 and status["containerID"] == before["status"]["containerStatuses"][0]["containerID"]
    assert container_processes(container) == pids
    assert (await server.agent("s", "steady"))["status"] == "ready"
