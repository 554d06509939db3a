"""The kubelet killed and started again: the node's pods keep running (their
containers belong to containerd's shims, not to the kubelet) and keep answering
through the proxy; the kubelet takes them over again without restarting them."""

from __future__ import annotations

import pytest

from ..kube import get, wait_for
from .rn import NODE, cluster, container_processes, pod_of, readiness_probes_passed

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
    # A new kubelet knows no probe results yet, so the pod's Ready from before the restart means
    # nothing until the new kubelet has probed it itself. Its probe counters start at zero with the
    # process: one successful readiness probe of the pod counted there is the new kubelet's. (The
    # pod's status need not be written again: when the first probe passes before the kubelet's
    # first status sync, the status it computes equals the stored one and nothing is written.)
    async def probed_again():
        pod = await pod_of(api, rn_namespace, "steady")
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
        return ready and await readiness_probes_passed(api, rn_namespace, pod["metadata"]["name"]) > 0
    await wait_for(probed_again, "the restarted kubelet to probe the pod ready", timeout=60)
    await server.until("s", "steady", "ready", timeout=30)
    await server.say("s", "steady", "after")
    after = await pod_of(api, rn_namespace, "steady")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    status = after["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0 and status["containerID"] == before["status"]["containerStatuses"][0]["containerID"]
    assert container_processes(container) == pids
    assert (await server.agent("s", "steady"))["status"] == "ready"
