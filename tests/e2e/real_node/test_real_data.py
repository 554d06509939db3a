"""An agent's data on the real node: agentapi's state file on the PVC keeps the
conversation across a pod's deletion and across deleting the agent without
purge; purge removes the claim and its volume."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..kube import get, request, wait_for
from .rn import pod_of

pytestmark = pytest.mark.real_node


async def test_the_conversation_survives_deleting_the_pod(serve, api, rn_namespace):
    server = await serve()
    await server.create("s", {"id": "keep"})
    await server.until("s", "keep", "ready")
    await server.say("s", "keep", "remember me")
    old = await pod_of(api, rn_namespace, "keep")

    await request(api, "DELETE", f"/api/v1/namespaces/{rn_namespace}/pods/agent-keep-0")

    async def recreated():
        pod = await get(api, f"/api/v1/namespaces/{rn_namespace}/pods/agent-keep-0")
        return pod if pod and pod["metadata"]["uid"] != old["metadata"]["uid"] else None
    await wait_for(recreated, "the StatefulSet to recreate the pod")
    await server.until("s", "keep", "ready")
    await server.until_said("s", "keep", "remember me", timeout=10)


async def test_delete_keeps_the_data_until_purge_removes_claim_and_volume(serve, api, rn_namespace):
    server = await serve()
    await server.create("s", {"id": "back"})
    await server.until("s", "back", "ready")
    await server.say("s", "back", "still here?")
    pvc_path = f"/api/v1/namespaces/{rn_namespace}/persistentvolumeclaims/data-agent-back-0"
    pv_name = (await get(api, pvc_path))["spec"]["volumeName"]
    volume = Path((await get(api, f"/api/v1/persistentvolumes/{pv_name}"))["spec"]["local"]["path"])
    assert volume.is_dir()

    await server.delete("s", "back")
    await wait_for(lambda: _gone(server, "back"), "the agent to be deleted")
    assert await get(api, pvc_path) is not None, "deleting without purge removed the claim"

    await server.create("s", {"id": "back"})
    await server.until("s", "back", "ready")
    await server.until_said("s", "back", "still here?", timeout=10)
    assert (await get(api, pvc_path))["spec"]["volumeName"] == pv_name

    await server.delete("s", "back", purge=True)
    await wait_for(lambda: _gone(server, "back"), "the agent to be purged")
    await wait_for(lambda: _absent(api, pvc_path), "the claim to be deleted")
    await wait_for(lambda: _absent(api, f"/api/v1/persistentvolumes/{pv_name}"), "the volume to be deleted")
    await wait_for(lambda: _removed(volume), f"{volume} to be removed from the node")


async def _gone(server, agent_id: str) -> bool:
    return await server.agent("s", agent_id) is None


async def _absent(api, path: str) -> bool:
    return await get(api, path) is None


async def _removed(path: Path) -> bool:
    return not path.exists()
