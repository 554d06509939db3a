"""Claude Code in a real pod: the agent image's ``claude`` under agentapi, its home prepared
on its volume by the container's command, its key from a Secret, in a namespace that
enforces the restricted Pod Security Standard.

The model is the tests' stand-in (:mod:`tests.model_standin`), listening on the node's
address, the one address beyond their own network that the node's pods reach: the
model's API is out of reach of the tests."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests import conversation
from tests.conversation import exchanges
from tests.model_standin import ANSWER_PREFIX, TOOL_DONE_PREFIX, ModelStandIn

from ..kube import condition, get, request, wait_for
from .rn import container_processes, pod_of

pytestmark = pytest.mark.real_node
SECRET = "model-credentials"
SLOW = 300.0
"""Claude Code starts in seconds, more on a loaded 2-core machine under the pod's CPU limit."""
UID = 1000  # k8s_mode.run_as_user's default


def _node_address(node: dict) -> str:
    return next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")


async def _pod_log(api, namespace: str) -> str:
    """The tail of the agent's container output (what a failure is explained by)."""
    path = f"/api/v1/namespaces/{namespace}/pods/agent-c1-0/log"
    base, _, rest = path.lstrip("/").partition("/")
    try:
        async with api.call_api("GET", version="", base=f"/{base}", url=rest, params={"tailLines": "60"}) as resp:
            return resp.text
    except Exception as exc:  # the pod may be gone or not started; say so instead
        return f"(no log: {exc})"


async def test_a_claude_pod_answers_runs_a_tool_on_its_volume_and_survives_its_deletion(
        serve, api, rn_namespace, real_node):
    try:
        await _claude_pod_life(serve, api, rn_namespace, real_node)
    except (AssertionError, TimeoutError) as exc:
        raise AssertionError(f"{exc}\n--- the agent's container log:\n{await _pod_log(api, rn_namespace)}") from exc


async def _claude_pod_life(serve, api, rn_namespace, real_node) -> None:
    key = "sk-ant-standin-" + secrets.token_hex(24)
    await request(api, "POST", f"/api/v1/namespaces/{rn_namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": {"ANTHROPIC_API_KEY": key}})
    async with ModelStandIn(host=_node_address(real_node)) as model:
        server = await serve({
            "k8s_mode": {"secret_name": SECRET, "resources": {"memory_limit": "1Gi", "cpu_limit": "1"}},
            "agents": {"claude": {"base_url": model.url, "permission_mode": "dontAsk"},
                       # dontAsk: only tools allowed beforehand run, and no permission question is ever asked.
                       "commands": {"claude": ["claude", "--allowedTools", "Bash"]}},
        })
        await server.create("s", {"id": "c1", "agent": "claude", "message": "hello claude"})
        await server.until("s", "c1", "ready", timeout=SLOW)
        route = server.route("s", "c1")
        first = await conversation.agent_said(server.http, route, ANSWER_PREFIX + "hello claude", timeout=SLOW)
        assert [t for role, t in exchanges(first) if role == "user"] == ["hello claude"]
        assert (await conversation.call(server.http, "GET", f"{route}/status"))["agent_type"] == "claude"

        # Claude Code runs as the non-root uid (restricted Pod Security admitted the pod).
        pod = await pod_of(api, rn_namespace, "c1")
        container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
        pids = container_processes(container_id)
        commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode() for pid in pids}
        assert "agentapi" in commands.values() and "claude" in commands.values(), commands
        for pid in pids:
            uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if line.startswith("Uid:")).split()[1:]
            assert uids == [str(UID)] * 4, (commands[pid], uids)

        # A tool call: the file lands on the agent's volume.
        token = secrets.token_hex(8)
        await conversation.wait_stable(server.http, route, timeout=SLOW)
        await conversation.call(server.http, "POST", f"{route}/message",
                                json={"content": f"please write-file proof.txt {token}", "type": "user"})
        await conversation.agent_said(server.http, route, TOOL_DONE_PREFIX, timeout=SLOW)
        pvc = await get(api, f"/api/v1/namespaces/{rn_namespace}/persistentvolumeclaims/data-agent-c1-0")
        pv = await get(api, f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
        volume = Path(pv["spec"]["local"]["path"])
        assert (volume / "proof.txt").read_text() == token
        config = json.loads((volume / ".agentproxy" / "home" / ".claude.json").read_text())
        assert config["customApiKeyResponses"]["approved"] == [key[-20:]]
        before = await server.messages("s", "c1")

        # The pod deleted: the StatefulSet's new pod has the conversation back from the volume.
        await request(api, "DELETE", f"/api/v1/namespaces/{rn_namespace}/pods/agent-c1-0")

        async def recreated_and_ready():
            new = await get(api, f"/api/v1/namespaces/{rn_namespace}/pods/agent-c1-0")
            return new if new and new["metadata"]["uid"] != pod["metadata"]["uid"] and condition(new, "Ready") else None
        await wait_for(recreated_and_ready, "the StatefulSet's new pod to be ready", timeout=SLOW)
        await server.until("s", "c1", "ready", timeout=SLOW)
        await conversation.wait_answering(server.http, route, timeout=SLOW)
        # Ready only with the conversation back (the startup probe): the first answer is there.
        assert (await server.messages("s", "c1"))[:len(before)] == before
        await conversation.wait_stable(server.http, route, timeout=SLOW)
        await conversation.call(server.http, "POST", f"{route}/message", json={"content": "still there", "type": "user"})
        after = await conversation.agent_said(server.http, route, ANSWER_PREFIX + "still there", timeout=SLOW)
        assert [t for role, t in exchanges(after) if role == "user"].count("hello claude") == 1
        assert model.prompts().count("hello claude") == 1

    # The key went from the Secret to the model and nowhere else agentproxy writes.
    assert {r.headers.get("x-api-key") for r in model.requests if r.path == "/v1/messages"} == {key}
    for path in (f"/api/v1/namespaces/{rn_namespace}/configmaps/agent-c1-config",
                 f"/apis/apps/v1/namespaces/{rn_namespace}/statefulsets/agent-c1"):
        assert key not in json.dumps(await get(api, path)), path
    assert key not in json.dumps(await server.agent("s", "c1"))
