"""A Claude Code agent in k8s mode, with the pod's container run on this machine.

kwok runs no containers, so the container runs as a local process with the pod's own
command, arguments and environment (``standin.py``): the preparation of its home on
the volume, then the real agentapi around the real Claude Code (``bin/just agents``),
its key read from the Secret the pod references. The model is the tests' stand-in on
127.0.0.1 (:mod:`tests.model_standin`): the model's API is out of reach.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.conversation import agent_said, call, exchanges, wait_answering, wait_stable
from tests.model_standin import ANSWER_PREFIX, TOOL_DONE_PREFIX, ModelStandIn

from .kube import get, request, wait_for
from .standin import ContainerStandIn

SECRET = "model-credentials"
SLOW = 180.0
"""Claude Code takes seconds to start on a loaded machine; every wait allows for it."""


async def test_a_claude_pod_answers_its_first_message_and_runs_a_tool(servers, api, namespace, pod_cidr, tmp_path):
    if pod_cidr is None or not pod_cidr.is_loopback:
        pytest.skip("needs pods with loopback IPs, so that a local process can stand in for the container")
    key = "sk-ant-standin-" + secrets.token_hex(24)
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": {"TEAM_MODEL_KEY": key}})
    async with ModelStandIn() as model:
        server = await servers.start(
            f"k8s_mode.secret_name={SECRET}", "agents.claude.api_key_env=TEAM_MODEL_KEY",
            f"agents.claude.base_url={model.url}", "agents.claude.permission_mode=dontAsk",
            # dontAsk: only tools allowed beforehand run, and no permission question is ever asked.
            "agents.commands={claude: [claude, --allowedTools, Bash], echo: [python3, -m, agentproxy.demo_agent]}")
        http, route = server.http, f"{server.base}/sessions/s1/agents/c1/api"
        status, agent, _ = await server.call("POST", "/sessions/s1/agents",
                                             {"id": "c1", "agent": "claude", "message": "hello claude"})
        assert status == 201, agent

        async def ready():
            found = await server.agent("s1", "c1")
            return found if found and found["status"] == "ready" else None
        await wait_for(ready, "the claude agent's pod to be ready")
        configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-c1-config")
        assert configmap["data"]["ANTHROPIC_BASE_URL"] == model.url

        volumes = tmp_path / "volumes"
        with await ContainerStandIn.of_pod(api, namespace, "agent-c1-0", volumes) as container:
            await wait_answering(http, route, timeout=SLOW)
            first = await agent_said(http, route, ANSWER_PREFIX + "hello claude", timeout=SLOW)
            assert [t for role, t in exchanges(first) if role == "user"] == ["hello claude"], container.output()
            assert (await call(http, "GET", f"{route}/status"))["agent_type"] == "claude"
            assert model.prompts().count("hello claude") == 1

            # A tool call: Claude Code runs Bash in the pod's working directory, the volume.
            token = secrets.token_hex(8)
            await wait_stable(http, route, timeout=SLOW)
            await call(http, "POST", f"{route}/message",
                       json={"content": f"please write-file proof.txt {token}", "type": "user"})
            await agent_said(http, route, TOOL_DONE_PREFIX, timeout=SLOW)
            volume = volumes / "data-agent-c1-0"
            assert (volume / "proof.txt").read_text() == token
            home = json.loads((volume / ".agentproxy" / "home" / ".claude.json").read_text())
            assert home["customApiKeyResponses"]["approved"] == [key[-20:]]
        # The key went from the Secret to the model, and nowhere else.
        assert {r.headers.get("x-api-key") for r in model.requests if r.path == "/v1/messages"} == {key}
        for path in (f"/api/v1/namespaces/{namespace}/configmaps/agent-c1-config",
                     f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-c1"):
            assert key not in json.dumps(await get(api, path)), path
        _, shown, _ = await server.call("GET", "/sessions/s1/agents/c1")
        assert key not in json.dumps(shown)
        assert key not in server.output()


async def test_a_claude_agent_without_a_key_secret_is_refused_at_create(servers, api, namespace):
    server = await servers.start("agents.commands={claude: [claude], echo: [python3, -m, agentproxy.demo_agent]}")
    status, body, _ = await server.call("POST", "/sessions/s1/agents", {"id": "nokey", "agent": "claude"})
    assert status == 422, body
    assert body["error"]["field"] == "agent" and "k8s_mode.secret_name" in body["error"]["message"]
    # Nothing was made of it.
    assert await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-nokey") is None
    status, _, _ = await server.call("POST", "/sessions/s1/agents", {"id": "plain", "agent": "echo"})
    assert status == 201
