"""Suspend and resume on the real node: the kubelet stops the pod (agentapi saves the
conversation on SIGTERM to its volume), the PVC, ConfigMap and Service stay, and the
first request brings the pod back with the earlier messages; with ``agents.resume_wait``
a request waits for it instead."""

from __future__ import annotations

import pytest

from agentproxy import naming
from agentproxy.backends.k8s.kinds import CONFIGMAP, POD, PVC, SERVICE, STATEFULSET

from ..kube import get, wait_for

pytestmark = pytest.mark.real_node

AGENTAPI_HOST = {"Host": "localhost"}


async def test_a_suspended_agent_leaves_its_volume_and_comes_back_with_its_conversation(serve, api, rn_namespace):
    server = await serve()
    names = naming.object_names("nap")
    await server.create("s", {"id": "nap", "message": "hello"})
    await server.until("s", "nap", "ready")
    await server.until_said("s", "nap", "hello")
    await server.say("s", "nap", "remember me")
    volume = (await get(api, PVC.item(rn_namespace, names["pvc"])))["spec"]["volumeName"]

    async with server.http.post(f"{server.base}/sessions/s/agents/nap/suspend") as resp:
        assert resp.status == 200, await resp.text()
    suspended = await server.until("s", "nap", "suspended", "Suspended")
    assert suspended["details"]["pod_ip"] is None
    await wait_for(lambda: _absent(api, POD.item(rn_namespace, names["pod"])), "the pod to be gone")
    sts = await get(api, STATEFULSET.item(rn_namespace, names["statefulset"]))
    assert sts["spec"]["replicas"] == 0 and naming.ANNOTATION_SUSPENDED in sts["metadata"]["annotations"]
    assert (await get(api, PVC.item(rn_namespace, names["pvc"])))["spec"]["volumeName"] == volume
    for kind, name in ((CONFIGMAP, names["configmap"]), (SERVICE, names["service"])):
        assert await get(api, kind.item(rn_namespace, name)) is not None, kind.name

    # The first request resumes it: 503 with Retry-After, then the pod is back on the same volume.
    async with server.http.get(f"{server.route('s', 'nap')}/status", headers=AGENTAPI_HOST) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"], await resp.text()
        assert (await resp.json())["error"]["code"] == "agent_resuming"
    await server.until("s", "nap", "ready")
    await server.until_said("s", "nap", "remember me", timeout=30)
    conversation = await server.messages("s", "nap")
    assert conversation.count(("user", "hello")) == 1, conversation  # the first message is not sent again
    assert (await get(api, PVC.item(rn_namespace, names["pvc"])))["spec"]["volumeName"] == volume


async def test_with_resume_wait_a_request_waits_for_the_pod(serve, api, rn_namespace):
    server = await serve({"agents": {"resume_wait": "90s"}})
    await server.create("s", {"id": "doze"})
    await server.until("s", "doze", "ready")
    await server.say("s", "doze", "wake me")
    async with server.http.post(f"{server.base}/sessions/s/agents/doze/suspend") as resp:
        assert resp.status == 200, await resp.text()
    await server.until("s", "doze", "suspended")

    async with server.http.get(f"{server.route('s', 'doze')}/status", headers=AGENTAPI_HOST) as resp:
        assert resp.status == 200, await resp.text()  # answered by the resumed pod
    assert (await server.agent("s", "doze"))["status"] == "ready"
    await server.until_said("s", "doze", "wake me", timeout=30)


async def _absent(api, path: str) -> bool:
    return await get(api, path) is None
