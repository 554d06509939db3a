"""agentproxy inside the cluster, deployed from ``deploy/`` with ``kubectl apply -k``.

Two proxy pods on the real node, from the proxy image built without Docker,
reach the API server with their ServiceAccount's token through the
``kubernetes`` Service (kube-proxy's rules). From the host, each is reached at
its pod IP: an agent created through one is Ready and answers through the
other; deleting one proxy pod ends only the streams it carried, and the
Deployment replaces it. The Role from ``agentproxy rbac``'s template is all the
proxy needs: without one of its verbs, creating an agent fails with a 403 that
says which.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time

import aiohttp
import pytest
import yaml

from ..kube import condition, delete_namespace, get, request, wait_for
from .incluster import DEPLOYMENT, NAMESPACE, SELECTOR, EventStream, kubectl, role_without, write_overlay
from .rn import NODE, Server

pytestmark = pytest.mark.real_node


@pytest.fixture
async def deployed(api, real_node, tmp_path):
    """``kubectl apply -k`` of the test overlay; the namespace is deleted afterwards."""
    if await get(api, f"/api/v1/namespaces/{NAMESPACE}") is not None:
        pytest.fail(f"namespace {NAMESPACE} exists already (left by an earlier run?); delete it first")
    api_key = secrets.token_urlsafe(24)
    overlay = write_overlay(tmp_path / "overlay", api_key)
    try:
        kubectl("apply", "-k", str(overlay))
        t0 = time.monotonic()
        rollout = kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=120s",
                          check=False)
        if rollout.returncode != 0:
            pods = kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide", check=False).stdout
            pytest.fail(f"the Deployment did not become available:\n{rollout.stderr}\n{pods}")
        print(f"Deployment available {time.monotonic() - t0:.1f} s after kubectl apply -k")
        yield overlay, api_key
    finally:
        # The proxies first, waiting for their pods: a namespace whose pods are still
        # terminating is looked at again only after their grace period.
        kubectl("-n", NAMESPACE, "delete", "deployment", DEPLOYMENT, "--cascade=foreground", "--wait",
                "--ignore-not-found", check=False)
        await delete_namespace(api, NAMESPACE)
        await wait_for(lambda: _gone(api), f"namespace {NAMESPACE} to be deleted", timeout=180)


async def _gone(api) -> bool:
    return await get(api, f"/api/v1/namespaces/{NAMESPACE}") is None


async def _proxy_pods(api) -> list[dict]:
    """The proxy pods that are not being deleted."""
    _, pods = await request(api, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods", params={"labelSelector": SELECTOR})
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


async def test_two_in_cluster_proxies_serve_one_namespace_and_outlive_each_other(api, deployed):
    overlay, api_key = deployed
    deployment = await get(api, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{DEPLOYMENT}")
    assert condition(deployment, "Available") and deployment["status"]["availableReplicas"] == 2

    logs = kubectl("-n", NAMESPACE, "logs", f"deployment/{DEPLOYMENT}").stdout
    # The image ships uvloop, so the line names the event loop as well as the mode.
    assert re.search(r"agentproxy API \(k8s mode, \w+ event loop\) listening on http://0\.0\.0\.0:8080", logs), logs
    assert "in-cluster credentials: the ServiceAccount token" in logs, logs

    pods = await _proxy_pods(api)
    assert len(pods) == 2 and all(p["spec"]["nodeName"] == NODE for p in pods)
    one, two = pods
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"}) as http:
        first = Server(f"http://{one['status']['podIP']}:8080", http)
        second = Server(f"http://{two['status']['podIP']}:8080", http)
        async with aiohttp.ClientSession() as anonymous:  # off loopback, the API wants a key
            async with anonymous.get(f"{first.base}/agents") as resp:
                assert resp.status == 401

        # Created through one proxy, Ready and answering through the other.
        body = {"id": "a1", "message": "hello from the host"}
        await first.create("s", body)
        agent = await second.until("s", "a1", "ready")
        assert agent["details"]["node"] == NODE
        await second.until_said("s", "a1", "hello from the host")
        await first.say("s", "a1", "through the first proxy")

        # The replicas agree: an equal repeat is 200 on either, another spec 409.
        async with http.post(f"{second.base}/sessions/s/agents", json=body) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(f"{second.base}/sessions/s/agents", json={"id": "a1", "message": "other"}) as resp:
            assert resp.status == 409, await resp.text()

        # The Service's cluster IP routes too (kube-proxy), from the host as from pods.
        service = await get(api, f"/api/v1/namespaces/{NAMESPACE}/services/{DEPLOYMENT}")
        async with http.get(f"http://{service['spec']['clusterIP']}/readyz") as resp:
            assert resp.status == 200

        # One stream through each proxy; the first proxy's pod is deleted.
        through_first = EventStream(http, first.route("s", "a1"))
        through_second = EventStream(http, second.route("s", "a1"))
        try:
            await wait_for(lambda: _both_streaming(through_first, through_second), "both event streams", 30)
            kubectl("-n", NAMESPACE, "delete", "pod", one["metadata"]["name"], "--grace-period=10", "--wait=false")
            await asyncio.wait_for(through_first.ended.wait(), 30)  # its stream ends with it...
            assert not through_second.ended.is_set()
            await second.say("s", "a1", "after the first proxy went")  # ...the other's goes on
            await wait_for(lambda: _saw(through_second, "after the first proxy went"), "the event through the second", 15)
            assert not through_second.ended.is_set()
        finally:
            await through_first.close()
            await through_second.close()

        async def replaced():
            now = await _proxy_pods(api)
            names = {p["metadata"]["name"] for p in now}
            ready = [p for p in now if condition(p, "Ready")]
            return len(ready) == 2 and one["metadata"]["name"] not in names and now
        now = await wait_for(replaced, "the Deployment to replace the deleted proxy pod", 90)
        third = next(p for p in now if p["metadata"]["name"] != two["metadata"]["name"])
        replacement = Server(f"http://{third['status']['podIP']}:8080", http)
        await replacement.until("s", "a1", "ready", timeout=30)
        await replacement.say("s", "a1", "through the replacement")

        # Without one verb of its Role the proxy cannot do its work, and says why.
        role = await get(api, f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}/roles/{DEPLOYMENT}")
        assert role is not None, "the proxy's Role is missing"
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump(role_without(role, "statefulsets", "patch")))
        try:
            async def refused():
                async with http.post(f"{second.base}/sessions/s/agents", json={"id": "a2"}) as resp:
                    return (resp.status, await resp.json()) if resp.status != 201 else None
            status, error = await wait_for(refused, "the create to be refused", 15)
            assert status == 403 and error["error"]["code"] == "forbidden", error
            message = error["error"]["message"]
            assert "the proxy's credentials may not patch statefulsets" in message, message
            assert f"system:serviceaccount:{NAMESPACE}:{DEPLOYMENT}" in message, message
            assert await second.agent("s", "a2") is None  # rolled back, nothing half made
        finally:
            kubectl("apply", "-k", str(overlay))

        await second.delete("s", "a1", purge=True)


async def _both_streaming(*streams: EventStream) -> bool:
    return all(s.lines and not s.ended.is_set() for s in streams)


async def _saw(stream: EventStream, text: str) -> bool:
    return stream.saw(text)
