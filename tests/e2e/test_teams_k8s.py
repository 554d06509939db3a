"""Teams in k8s mode with two replicas of `agentproxy serve`: quotas counted from the cluster's
objects (both replicas agree, a refused create leaves nothing behind), and credentials kept in
Secrets: one per user, one per agent read by ``secretKeyRef``, never in a ConfigMap, an answer,
a log or ``render``."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
from typing import Any

import aiohttp

from agentproxy import naming

from .kube import get, wait_for
from .served import Served

BOB = "e2e-teams-bob-key"
KEYS = json.dumps([{"name": "bob", "sha256": hashlib.sha256(BOB.encode()).hexdigest()}])
SETTINGS = (f"server.api_keys={KEYS}", "teams.quotas={default: {agents: 2}}")


async def call(http: aiohttp.ClientSession, served: Served, method: str, path: str,
               body: Any = None) -> tuple[int, Any, dict]:
    async with http.request(method, served.base + path, json=body, headers={"Authorization": f"Bearer {BOB}"},
                            timeout=aiohttp.ClientTimeout(total=60)) as response:
        return response.status, await response.json(), dict(response.headers)


async def usage(http: aiohttp.ClientSession, served: Served) -> dict[str, int]:
    status, body, _ = await call(http, served, "GET", "/usage")
    assert status == 200, body
    return body["quotas"][0]["usage"]


async def test_two_replicas_count_quotas_alike_from_the_cluster(servers, api, namespace):
    a, b = [await servers.start(*SETTINGS) for _ in range(2)]
    async with aiohttp.ClientSession() as http:
        for agent in ("q1", "q2"):
            status, body, _ = await call(http, a, "POST", "/sessions/s1/agents", {"id": agent})
            assert status == 201, body

        async def b_sees_two() -> bool:
            return (await usage(http, b))["agents"] == 2
        await wait_for(b_sees_two, "the other replica to count both agents", timeout=60)
        assert (await usage(http, a))["agents"] == 2
        status, body, _ = await call(http, b, "POST", "/sessions/s1/agents", {"id": "q3"})
        assert status == 429 and body["error"]["field"] == "teams.quotas.default.agents", body
        names = naming.object_names("q3")
        assert await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{names['statefulset']}") is None
        assert await get(api, f"/api/v1/namespaces/{namespace}/configmaps/{names['configmap']}") is None

        # A delete on one replica makes room on the other once it sees it.
        status, body, _ = await call(http, a, "DELETE", "/sessions/s1/agents/q1?purge=true")
        assert status == 200, body

        async def b_sees_one() -> bool:
            return (await usage(http, b))["agents"] == 1
        await wait_for(b_sees_one, "the other replica to see the delete", timeout=120)
        status, body, _ = await call(http, b, "POST", "/sessions/s1/agents", {"id": "q3"})
        assert status == 201, body

        for agent in ("q2", "q3"):
            await call(http, a, "DELETE", f"/sessions/s1/agents/{agent}?purge=true")


GH_VALUE = "ghp-e2e-0123456789-never-logged"
CREDENTIAL_SETTINGS = (f"server.api_keys={KEYS}", "teams.groups={ml: [bob]}",
                       "teams.profiles={gh: {agent: echo, credentials: {GH_TOKEN: github}}}")


async def test_credentials_are_secrets_and_reach_the_agent_by_secret_key_ref(servers, api, namespace):
    a, b = [await servers.start(*CREDENTIAL_SETTINGS) for _ in range(2)]
    answers: list[str] = []
    async with aiohttp.ClientSession() as http:
        async def call_(served: Served, method: str, path: str, body: Any = None) -> tuple[int, Any]:
            status, answer, _ = await call(http, served, method, path, body)
            answers.append(json.dumps(answer))
            return status, answer

        status, body = await call_(a, "PUT", "/credentials/github", {"value": GH_VALUE})
        assert status == 200 and body["name"] == "github", body
        # The other replica reads the same store.
        status, body = await call_(b, "GET", "/credentials")
        assert [c["name"] for c in body["credentials"]] == ["github"], body
        stored = [s for s in (await get(api, f"/api/v1/namespaces/{namespace}/secrets"))["items"]
                  if s["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "credentials"]
        assert len(stored) == 1 and stored[0]["metadata"]["annotations"]["agentproxy.io/credentials-holder"] == "user/bob"
        assert base64.b64decode(stored[0]["data"]["github"]).decode() == GH_VALUE

        status, body = await call_(a, "POST", "/sessions/s1/agents", {"id": "c1", "profile": "gh"})
        assert status == 201, body
        names = naming.object_names("c1")
        statefulset = await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{names['statefulset']}")
        env = statefulset["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "GH_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": "agent-c1-credentials", "key": "GH_TOKEN", "optional": True}}} in env
        secret = await get(api, f"/api/v1/namespaces/{namespace}/secrets/agent-c1-credentials")
        assert base64.b64decode(secret["data"]["GH_TOKEN"]).decode() == GH_VALUE
        configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/{names['configmap']}")
        assert secret["metadata"]["ownerReferences"][0]["uid"] == configmap["metadata"]["uid"]
        assert GH_VALUE not in json.dumps(configmap) and GH_VALUE not in json.dumps(statefulset)

        # A changed credential reaches the agent at its next start (a resume).
        status, body = await call_(b, "PUT", "/credentials/github", {"value": GH_VALUE + "-2"})
        assert status == 200, body
        for verb in ("suspend", "resume"):
            status, body = await call_(a, "POST", f"/sessions/s1/agents/c1/{verb}")
            assert status in (200, 202), body
        secret = await get(api, f"/api/v1/namespaces/{namespace}/secrets/agent-c1-credentials")
        assert base64.b64decode(secret["data"]["GH_TOKEN"]).decode() == GH_VALUE + "-2"

        for served in (a, b):
            status, body = await call_(served, "GET", "/sessions/s1/agents/c1")
            assert status == 200
        status, body = await call_(a, "DELETE", "/sessions/s1/agents/c1?purge=true")
        assert status == 200, body

        async def secret_gone() -> bool:
            return await get(api, f"/api/v1/namespaces/{namespace}/secrets/agent-c1-credentials") is None
        await wait_for(secret_gone, "the agent's Secret to go with it", timeout=60)
        status, body = await call_(a, "DELETE", "/credentials/github")
        assert status == 200, body
    rendered = subprocess.run([sys.executable, "-m", "agentproxy", "render", "--session", "s1", "--profile", "gh",
                               *[f"--set={s}" for s in CREDENTIAL_SETTINGS]], capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    assert "agent-" in rendered.stdout and "secretKeyRef" in rendered.stdout
    for text in (*answers, rendered.stdout, rendered.stderr, a.output(), b.output()):
        assert GH_VALUE not in text


async def test_two_replicas_racing_creates_at_the_limit_let_only_one_through(servers, api, namespace):
    a, b = [await servers.start(f"server.api_keys={KEYS}", "teams.quotas={default: {agents: 1}}") for _ in range(2)]
    async with aiohttp.ClientSession() as http:
        for round_ in range(3):
            results = await asyncio.gather(*(call(http, served, "POST", "/sessions/s1/agents", {"id": f"r{round_}{n}"})
                                             for n, served in enumerate((a, b))))
            statuses = sorted(status for status, _, _ in results)
            assert statuses == [201, 429], results
            refused = next(body for status, body, _ in results if status == 429)
            assert refused["error"]["field"] == "teams.quotas.default.agents", refused
            made = next(body for status, body, _ in results if status == 201)
            status, body, _ = await call(http, a, "DELETE", f"/sessions/s1/agents/{made['id']}?purge=true")
            assert status == 200, body

            async def both_see_none() -> bool:
                return [(await usage(http, served))["agents"] for served in (a, b)] == [0, 0]
            await wait_for(both_see_none, "both replicas to see the delete", timeout=120)
