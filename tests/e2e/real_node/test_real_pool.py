"""A warm pool on the real node: the member's pod really runs its launcher, which waits for its
binding with the token of a Secret only that pod mounts (its startup probe passes while it
waits, so the member is ready); a create that names no id takes it and binds it over the pod's
IP, without a new pod, and the agent answers its first message; its progress is its claim's
steps. Its container killed after the
claim, the kubelet starts it again, and it starts bound at once, with the owner's variables."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from agentproxy.pools import LABEL_POOL

from ..kube import get, request, wait_for
from .rn import container_processes, pod_of

pytestmark = pytest.mark.real_node

POOL = {"pools": [{"name": "echo", "size": 1, "agent": "echo"}]}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def _agentapi_pid(container_id: str) -> int:
    for pid in container_processes(container_id):
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().endswith("agentapi"):
            return pid
    raise AssertionError(f"no agentapi runs in container {container_id}")


async def _the_member(api, namespace: str, condition: str, what: str) -> str:
    """The id of the pool's one member, once its container's status says ``condition``
    (``started``: its launcher waits; ``ready``: its agent answers)."""
    async def member():
        _, found = await request(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps",
                                 params={"labelSelector": LABEL_POOL})
        ids = [cm["metadata"]["labels"]["agentproxy.io/agent-id"] for cm in found["items"]]
        if len(ids) != 1:
            return None
        pod = await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-{ids[0]}-0")
        statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
        return ids[0] if statuses and statuses[0].get(condition) else None
    return await wait_for(member, what, timeout=180)


async def _kill_once_saved(api, namespace: str, agent_id: str, container: str, text: str) -> dict:
    """Once the launcher had agentapi save ``text`` on the agent's volume, SIGKILL every process
    of its container (as an OOM kill would); the container's status once it started again and
    is ready."""
    pvc = await get(api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-{agent_id}-0")
    pv = await get(api, f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    state = Path(pv["spec"]["local"]["path"]) / ".agentproxy" / "agentapi-state.json"

    async def saved():
        return state.exists() and text in state.read_text(errors="replace")
    await wait_for(saved, "the launcher to have agentapi save the conversation on the volume")
    for pid in container_processes(container):
        os.kill(pid, signal.SIGKILL)

    async def restarted():
        pod = await pod_of(api, namespace, agent_id)
        status = pod["status"]["containerStatuses"][0]
        return status if status["restartCount"] >= 1 and status.get("ready") else None
    return await wait_for(restarted, "the container to start again and be ready", timeout=180)


async def test_a_member_waits_on_the_node_and_its_claim_binds_it_in_place(serve, api, rn_namespace):
    server = await serve(POOL)

    member_id = await _the_member(api, rn_namespace, "started", "the member's launcher to wait for its binding")
    waiting = await pod_of(api, rn_namespace, member_id)
    assert waiting["status"]["containerStatuses"][0]["ready"] is False  # no agentapi yet: not Ready
    container = waiting["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:4] for pid in container_processes(container)]
    assert not any(c[0].decode().endswith("agentapi") for c in commands), commands

    agent = await server.create("own", {"env": {"GREETING": "hi there"}, "message": "hello"})
    assert agent["id"] == member_id and agent["details"]["start"] == "warm", agent
    await server.until("own", member_id, "ready")
    await server.until_said("own", member_id, "hello")
    # Its start is its claim's steps, the pod's real readiness after its binding among them; the
    # member's own start (scheduling, the image, the container) is not replayed as the agent's.
    async with server.http.get(f"{server.base}/sessions/own/agents/{member_id}/progress") as resp:
        body = (await resp.read()).decode()
    steps = [json.loads(line[len("data: "):]) for line in body.splitlines() if line.startswith("data: ")]
    assert [s["step"] for s in steps] == ["claimed", "bound", "agentapi_answering", "first_message_delivered",
                                         "ready"], steps
    claimed = await pod_of(api, rn_namespace, member_id)
    assert claimed["metadata"]["uid"] == waiting["metadata"]["uid"]  # the same pod, not restarted
    assert claimed["status"]["containerStatuses"][0]["restartCount"] == 0
    env = _environ(_agentapi_pid(container))
    assert env["GREETING"] == "hi there" and env["AGENTPROXY_SESSION"] == "own"
    assert env["AGENTPROXY_AGENT_ID"] == member_id and "AGENTPROXY_BINDING_TOKEN" not in env

    # Its process killed (as an OOM kill would): the kubelet starts the container again, bound at
    # once with the owner's variables from its ConfigMap, and the conversation from its volume.
    await server.say("own", member_id, "remember me")
    status = await _kill_once_saved(api, rn_namespace, member_id, container, "remember me")
    await server.until("own", member_id, "ready")
    await server.until_said("own", member_id, "remember me")
    again = status["containerID"].split("://")[1]
    env = _environ(_agentapi_pid(again))
    assert env["GREETING"] == "hi there" and env["AGENTPROXY_SESSION"] == "own" and env["AGENTPROXY_BOUND"] == "1"
    conversation = await server.messages("own", member_id)
    assert conversation.count(("user", "hello")) == 1, conversation  # the first message is not sent again


async def test_a_prestarted_member_runs_before_its_claim_and_answers_without_a_new_process(serve, api, rn_namespace):
    """``prestart``: the member's pod is Ready before any claim (its agent runs and is stable);
    the claim's first message goes to that very agentapi. Its container killed after the claim
    starts bound, with the conversation, and the first message is not sent a second time."""
    server = await serve({"pools": [{"name": "early", "size": 1, "agent": "echo", "prestart": True}]})

    member_id = await _the_member(api, rn_namespace, "ready", "the pre-started member's pod to be Ready")
    waiting = await pod_of(api, rn_namespace, member_id)
    container = waiting["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    before = _agentapi_pid(container)  # agentapi runs before the claim

    agent = await server.create("own", {"message": "hello early"})
    assert agent["id"] == member_id and agent["details"]["start"] == "warm", agent
    await server.until_said("own", member_id, "hello early")
    claimed = await pod_of(api, rn_namespace, member_id)
    assert claimed["metadata"]["uid"] == waiting["metadata"]["uid"]
    assert claimed["status"]["containerStatuses"][0]["restartCount"] == 0
    assert _agentapi_pid(container) == before  # the same agentapi took the first message

    await _kill_once_saved(api, rn_namespace, member_id, container, "echo: hello early")
    await server.until("own", member_id, "ready")
    await server.until_said("own", member_id, "hello early")
    await server.idle("own", member_id)  # stable: an initial prompt would have been sent by now
    conversation = await server.messages("own", member_id)
    assert conversation.count(("user", "hello early")) == 1, conversation
