"""Teams in k8s mode with two replicas of `agentproxy serve`: quotas counted from the cluster's
objects (both replicas agree, a refused create leaves nothing behind) and the credential routes
refused until k8s mode has a store."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aiohttp
from kube import get, wait_for
from served import Served

from agentproxy import naming

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

        status, body, _ = await call(http, a, "PUT", "/credentials/anthropic", {"value": "never-stored"})
        assert status == 501 and body["error"]["code"] == "not_implemented"
        for agent in ("q2", "q3"):
            await call(http, a, "DELETE", f"/sessions/s1/agents/{agent}?purge=true")
