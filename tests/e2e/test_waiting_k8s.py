"""``waiting_input`` in k8s mode: a Claude agent's hooks report to the proxy, signed by the
pod's own ServiceAccount token, which the real API server reviews.

The first test plays the pod's part with tokens the API server issues bound to each pod (what
the kubelet writes into the projected volume; kwok runs no kubelet): a pod's token marks its own
agent and no other, on both replicas; a token for another audience, of no pod, or of a pod that
is gone is refused; a message through the proxy and the hook's "no longer" each end it; a
recreated pod does not inherit its predecessor's question. The second runs the real Claude Code
in the pod's container on this machine (``standin.py``, which writes the projected token as the
kubelet does), asked to run a tool in permission mode ``default``: its ``Notification`` hook
reaches the proxy and the agent is ``waiting_input`` with the question, until it is answered.
The model is the tests' stand-in (:mod:`tests.model_standin`): the model's API is out of reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time

import aiohttp
import pytest

from tests.conversation import agent_said, call, wait_answering, wait_stable
from tests.model_standin import TOOL_DONE_PREFIX, ModelStandIn

from .kube import get, request, wait_for
from .served import Served, free_port
from .standin import ContainerStandIn

QUESTION = "Claude needs your permission to use Bash"
SLOW = 180.0
"""Claude Code takes seconds to start on a loaded machine; every wait allows for it."""
SECRET = "model-credentials"


async def pod_token(api, namespace: str, pod_name: str, audience: str | None = "agentproxy", bound: bool = True) -> str:
    """A token of the namespace's default ServiceAccount, as the kubelet gets one for a pod."""
    spec: dict = {"audiences": [audience] if audience else None, "expirationSeconds": 600}
    if bound:
        pod = await get(api, f"/api/v1/namespaces/{namespace}/pods/{pod_name}")
        assert pod is not None
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod_name, "uid": pod["metadata"]["uid"]}
    _, answer = await request(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/default/token",
                              body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
    return answer["status"]["token"]


async def report(server: Served, token: str | None, question: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with server.http.post(f"{server.base}/hooks/waiting", json={"question": question}, headers=headers) as resp:
        return resp.status, await resp.json()


async def shown(server: Served, agent_id: str) -> tuple[str, str | None]:
    agent = await server.agent("s1", agent_id)
    assert agent is not None
    return agent["status"], agent["question"]


async def until_shown(server: Served, agent_id: str, status: str, question: str | None, timeout: float = 90.0):
    async def check():
        return await shown(server, agent_id) == (status, question)
    await wait_for(check, f"{agent_id} to be {status} ({question})", timeout=timeout)


async def start_pair(servers, api, namespace) -> tuple[Served, Served]:
    """Two replicas, pods reaching the first (a Service would pick either), with the model's
    key in a Secret (a Claude agent is refused without one)."""
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET},
        "stringData": {"ANTHROPIC_API_KEY": "sk-ant-standin-" + secrets.token_hex(24)}})
    port = free_port()
    settings = (f"k8s_mode.waiting_url=http://127.0.0.1:{port}", f"k8s_mode.secret_name={SECRET}",
                "agents.commands={claude: [claude], echo: [python3, -m, agentproxy.demo_agent]}")
    return await servers.start(*settings, port=port), await servers.start(*settings)


async def test_a_pods_token_marks_its_own_agent_and_no_other(servers, api, namespace):
    first, second = await start_pair(servers, api, namespace)
    for agent_id in ("w1", "w2"):
        status, body, _ = await first.call("POST", "/sessions/s1/agents", {"id": agent_id, "agent": "claude"})
        assert status == 201, body
    for agent_id in ("w1", "w2"):
        await until_shown(first, agent_id, "ready", None)
    configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-w1-config")
    assert configmap is not None and configmap["data"]["AGENTPROXY_WAITING_URL"] == f"{first.base}/hooks/waiting"
    pod = await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-w1-0")
    assert pod is not None
    assert any("projected" in v for v in pod["spec"]["volumes"])

    seen: list[dict] = []

    async def follow() -> None:
        async for event in second.events("s1"):
            seen.append(event)
    follower = asyncio.ensure_future(follow())
    try:
        await asyncio.sleep(1)  # subscribed (an event before would be missed, not wrong)
        token1 = await pod_token(api, namespace, "agent-w1-0")
        token2 = await pod_token(api, namespace, "agent-w2-0")
        status, answer = await report(first, token1, QUESTION)
        assert status == 200 and answer["id"] == "w1", answer
        await until_shown(first, "w1", "waiting_input", QUESTION)
        await until_shown(second, "w1", "waiting_input", QUESTION)  # the other replica shows it too
        assert await shown(first, "w2") == ("ready", None)

        async def streamed():
            return any(e.get("id") == "w1" and e.get("status") == "waiting_input" and e.get("question") == QUESTION
                       for e in seen)
        await wait_for(streamed, "the other replica's /events to carry w1's question")

        # The second pod's token speaks for the second agent only: the body names no agent.
        status, answer = await report(first, token2, "another question")
        assert status == 200 and answer["id"] == "w2"
        await until_shown(first, "w2", "waiting_input", "another question")
        assert await shown(first, "w1") == ("waiting_input", QUESTION)

        # Refused: no token, not a token, another audience, a token of no pod.
        wrong_audience = await pod_token(api, namespace, "agent-w1-0", audience=None)
        unbound = await pod_token(api, namespace, "agent-w1-0", bound=False)
        for token, expected in ((None, 401), ("not-a-token", 401), (token1 + "x", 401), (wrong_audience, 401),
                                (unbound, 401)):
            status, answer = await report(first, token, "forged")
            assert status == expected and answer["error"]["code"] == "unauthorized", (token, answer)
        status, answer = await report(first, token1, 5)  # type: ignore[arg-type]
        assert status == 422 and answer["error"]["field"] == "question"
        assert await shown(first, "w1") == ("waiting_input", QUESTION)

        # A message through the proxy answers it (the agent's reply does not matter: kwok runs nothing).
        await first.call("POST", "/sessions/s1/agents/w1/api/message", {"content": "\r", "type": "raw"})
        await until_shown(second, "w1", "ready", None)
        # The hook's "no longer" ends it too.
        status, answer = await report(first, token2, None)
        assert (status, answer["status"]) == (200, "ready"), answer
        await until_shown(second, "w2", "ready", None)

        # A recreated pod does not inherit the question of the one before; the old pod's token is refused.
        assert (await report(first, token2, QUESTION))[0] == 200
        await until_shown(first, "w2", "waiting_input", QUESTION)
        old_uid = (await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-w2-0") or {})["metadata"]["uid"]
        await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/pods/agent-w2-0")

        async def recreated():
            found = await get(api, f"/api/v1/namespaces/{namespace}/pods/agent-w2-0")
            return found is not None and found["metadata"]["uid"] != old_uid
        await wait_for(recreated, "the pod to be recreated")
        await until_shown(first, "w2", "ready", None)
        status, answer = await report(first, token2, "a question of the old pod")
        assert status in (401, 403), answer
        assert await shown(second, "w2") == ("ready", None)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await follower


async def test_a_claude_pod_asking_for_a_permission_is_waiting_input(servers, api, namespace, pod_cidr, tmp_path):
    if pod_cidr is None or not pod_cidr.is_loopback:
        pytest.skip("needs pods with loopback IPs, so that a local process can stand in for the container")
    key = "sk-ant-standin-" + secrets.token_hex(24)
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/secrets", body={
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET}, "stringData": {"TEAM_MODEL_KEY": key}})
    async with ModelStandIn() as model:
        port = free_port()
        server = await servers.start(
            f"k8s_mode.secret_name={SECRET}", "agents.claude.api_key_env=TEAM_MODEL_KEY",
            f"agents.claude.base_url={model.url}", "agents.claude.permission_mode=default",
            f"k8s_mode.waiting_url=http://127.0.0.1:{port}", "agents.commands={claude: [claude]}", port=port)
        http, route = server.http, f"{server.base}/sessions/s1/agents/c1/api"
        status, agent, _ = await server.call("POST", "/sessions/s1/agents", {"id": "c1", "agent": "claude"})
        assert status == 201, agent
        await until_shown(server, "c1", "ready", None)
        volumes = tmp_path / "volumes"
        with await ContainerStandIn.of_pod(api, namespace, "agent-c1-0", volumes) as container:
            await wait_answering(http, route, timeout=SLOW)
            await wait_stable(http, route, timeout=SLOW)
            token = secrets.token_hex(8)
            asked = time.monotonic()
            await call(http, "POST", f"{route}/message",
                       json={"content": f"please write-file proof.txt {token}", "type": "user"})

            async def waiting():
                found = await server.agent("s1", "c1")
                return found if found and found["status"] == "waiting_input" else None
            agent = await wait_for(waiting, "the permission question", timeout=SLOW)
            print(f"waiting_input {time.monotonic() - asked:.2f} s after the message")
            assert "Bash" in agent["question"] or "permission" in agent["question"].lower(), container.output()
            volume = volumes / "data-agent-c1-0"
            assert not (volume / "proof.txt").exists()
            # Enter takes the dialog's first choice, yes: the tool runs, and the agent is ready again.
            await call(http, "POST", f"{route}/message", json={"content": "\r", "type": "raw"})
            await agent_said(http, route, TOOL_DONE_PREFIX, timeout=SLOW)
            assert (volume / "proof.txt").read_text() == token
            await until_shown(server, "c1", "ready", None, timeout=SLOW)
        # The pod's token is in no object, answer or log line.
        tokens = [p.read_text() for p in volumes.glob("agent-c1-0-*/waiting-token")]
        assert tokens and all(tokens)
        for path in (f"/api/v1/namespaces/{namespace}/configmaps/agent-c1-config",
                     f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-c1"):
            text = json.dumps(await get(api, path))
            assert not any(t in text for t in tokens), path
        assert not any(t in server.output() for t in tokens)
