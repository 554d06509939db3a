"""Suspend, resume and idle culling in k8s mode, through real `agentproxy serve` processes
against the test cluster.

A suspended agent is its StatefulSet at 0 replicas with an annotation: the pod goes, the
PVC, ConfigMap and Service stay, and neither a restarted proxy nor its reconciler starts
it again. Where kwok runs no container, the real agentapi runs as the pod's container
would (``standin.py``), on a local directory per PVC: the conversation saved on SIGTERM is
back in the pod of the resume. Idle culling by two replicas suspends each idle agent once
and leaves the agents that get requests (through the other replica) running.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from agentproxy import naming
from agentproxy.backends.k8s.kinds import CONFIGMAP, POD, PVC, SERVICE, STATEFULSET
from tests.conversation import AGENTAPI_HOST, agent_said, exchanges, say, wait_answering

from .kube import delete_namespace, get, request, wait_for
from .served import Served, counted
from .standin import ContainerStandIn

SESSION = "s1"


async def test_a_suspended_agent_keeps_its_volume_and_conversation(servers, api, namespace, pod_cidr, tmp_path):
    if pod_cidr is None or not pod_cidr.is_loopback:
        pytest.skip("needs pods with loopback IPs, so that a local process can stand in for the container")
    names = naming.object_names("napper")
    serve = await servers.start()
    http, volumes = serve.http, tmp_path / "volumes"
    route = f"{serve.base}/sessions/{SESSION}/agents/napper"
    async with http.post(f"{serve.base}/sessions/{SESSION}/agents", json={"id": "napper", "message": "hello"}) as r:
        assert r.status == 201, await r.text()
    await wait_for(lambda: _status(serve, "ready"), "the agent to be ready")
    both = [("user", "hello"), ("agent", "echo: hello"), ("user", "second"), ("agent", "echo: second")]
    with await ContainerStandIn.of_pod(api, namespace, names["pod"], volumes) as container:
        await wait_answering(http, f"{route}/api")
        await agent_said(http, f"{route}/api", "echo: hello")
        await say(http, f"{route}/api", "second")

        async with http.post(f"{route}/suspend") as r:
            assert r.status == 200, await r.text()
            answered = await r.json()
        assert answered["status"] in ("stopping", "suspended") and answered["reason"] in ("Suspending", "Suspended")
        # The kubelet would stop the container with SIGTERM once the pod is being deleted.
        await wait_for(lambda: _pod_leaving(api, namespace, names["pod"]), "the pod to be deleted")
    assert "echo: second" in (volumes / names["pvc"] / ".agentproxy" / "agentapi-state.json").read_text(), \
        container.output()

    suspended = await wait_for(lambda: _status(serve, "suspended"), "the agent to be suspended")
    assert suspended["reason"] == "Suspended" and "suspended through the API" in suspended["message"]
    sts = await get(api, STATEFULSET.item(namespace, names["statefulset"]))
    assert sts["spec"]["replicas"] == 0
    assert json.loads(sts["metadata"]["annotations"][naming.ANNOTATION_SUSPENDED])["cause"] == "api"
    for kind, name in ((PVC, names["pvc"]), (CONFIGMAP, names["configmap"]), (SERVICE, names["service"])):
        assert await get(api, kind.item(namespace, name)) is not None, kind.name
    async with http.post(f"{route}/suspend") as r:  # a no-op
        assert r.status == 200 and (await r.json())["status"] == "suspended"
    first = await serve.metrics()
    assert counted(first, "agentproxy_agent_suspends_total", cause="api") == 1

    # A restarted proxy finds it suspended, and its reconciler leaves it so.
    await serve.stop()
    await serve.start()
    assert (await _status(serve, "suspended")) is not None
    await asyncio.sleep(5)  # longer than a reconcile pass after start (delay and settle)
    sts = await get(api, STATEFULSET.item(namespace, names["statefulset"]))
    assert sts["spec"]["replicas"] == 0 and await get(api, POD.item(namespace, names["pod"])) is None
    assert (await _status(serve, "suspended")) is not None

    # The first request resumes it: 503 with Retry-After while the pod comes back, then the pod
    # is back with the conversation. kwok marks a pod Ready the moment it exists, before any
    # container could answer (a kubelet would not): when the resume already sees that pod, the
    # request is forwarded to it, and with no stand-in running yet its address refuses (502).
    async with http.get(f"{route}/api/messages", headers=AGENTAPI_HOST) as r:
        answer = await r.json()
        if r.status == 503:
            assert r.headers["Retry-After"] == "2" and answer["error"]["code"] == "agent_resuming", answer
        else:
            assert r.status == 502 and "cannot connect" in answer["error"]["message"], answer
    sts = await get(api, STATEFULSET.item(namespace, names["statefulset"]))
    assert sts["spec"]["replicas"] == 1 and naming.ANNOTATION_SUSPENDED not in sts["metadata"]["annotations"]
    await wait_for(lambda: _status(serve, "ready"), "the resumed agent to be ready")
    with await ContainerStandIn.of_pod(api, namespace, names["pod"], volumes) as container:
        # kwok marks the pod Ready at once; a kubelet would only once its startup probe passes,
        # which it does only with the conversation loaded (agentapi loads its state file a
        # moment after it answers): then the very first request gets the whole conversation.
        await wait_for(lambda: _passes(container), "the pod's startup probe to pass")
        async with http.get(f"{route}/api/messages", headers=AGENTAPI_HOST) as r:
            assert r.status == 200, await r.text()
            assert exchanges((await r.json())["messages"]) == both, container.output()
    samples = await serve.metrics()
    assert counted(samples, "agentproxy_agent_resumes_total", cause="request") == 1
    assert counted(samples, "agentproxy_agent_resume_seconds_count", cause="request") == 1


async def _passes(container: ContainerStandIn) -> bool:
    return await asyncio.to_thread(container.startup_probe_passes)


async def _status(serve: Served, status: str) -> dict | None:
    agent = await serve.agent(SESSION, "napper")
    return agent if agent is not None and agent["status"] == status else None


async def _pod_leaving(api, namespace: str, pod: str) -> bool:
    found = await get(api, POD.item(namespace, pod))
    return found is None or bool(found["metadata"].get("deletionTimestamp"))


CULLED = 196
"""Agents left idle: every one must be suspended exactly once, by one of the two replicas (with the
busy ones, 200 agents: about two minutes on the test cluster, whose controllers set the pace)."""
BUSY = 4
"""Agents that get a request every second through one replica: the other must see them active."""
IDLE_TIMEOUT = "12s"


async def test_two_replicas_cull_each_idle_agent_once_and_leave_busy_agents_alone(servers, api, namespace):
    culled = [f"idle-{n:03d}" for n in range(CULLED)]
    busy = [f"busy-{n}" for n in range(BUSY)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        replicas = [await servers.start(f"agents.idle_timeout={IDLE_TIMEOUT}") for _ in range(2)]
        a, b = replicas
        try:
            await _create_all(a, http, culled + busy)
            stop = asyncio.Event()
            keeper = asyncio.create_task(_keep_busy(b, http, busy, stop))
            try:
                # The test cluster's controllers bind volumes and start pods at their own pace.
                await wait_for(lambda: _all_suspended(api, namespace, culled), "every idle agent to be suspended",
                               timeout=220)
                await asyncio.sleep(6)  # two more culling passes and a reconcile: nothing may change
            finally:
                stop.set()
                await keeper
            for agent_id in culled:
                assert (await _replicas(api, namespace, agent_id)) == 0, agent_id
            for agent_id in busy:
                assert (await _replicas(api, namespace, agent_id)) == 1, agent_id
                agent = await b.agent(SESSION, agent_id)
                assert agent["status"] == "ready" and agent["last_active_at"], agent
            samples = [await replica.metrics() for replica in replicas]
            suspends = [counted(s, "agentproxy_agent_suspends_total", cause="idle") for s in samples]
            resumes = [counted(s, "agentproxy_agent_resumes_total", cause=c) for s in samples for c in ("api", "request")]
            assert sum(suspends) == CULLED, suspends  # each once, by one of them
            assert sum(resumes) == 0, resumes
        finally:
            for replica in replicas:
                await replica.stop()
            # Hundreds of claims and volumes to delete: the tests after this one get a quiet cluster.
            await delete_namespace(api, namespace)
            await wait_for(lambda: _absent(api, f"/api/v1/namespaces/{namespace}"), "the namespace to be deleted",
                           timeout=180)


async def _create_all(serve: Served, http: aiohttp.ClientSession, agent_ids: list[str]) -> None:
    limit = asyncio.Semaphore(16)

    async def create(agent_id: str) -> None:
        async with limit, http.post(f"{serve.base}/sessions/{SESSION}/agents", json={"id": agent_id}) as r:
            assert r.status == 201, await r.text()
    await asyncio.gather(*(create(a) for a in agent_ids))


async def _keep_busy(serve: Served, http: aiohttp.ClientSession, agent_ids: list[str], stop: asyncio.Event) -> None:
    """A proxied request to each busy agent every second (nothing answers on kwok: 502 or 503,
    a request all the same), for at most as long as the test may take."""
    deadline = time.monotonic() + 300
    while not stop.is_set() and time.monotonic() < deadline:
        for agent_id in agent_ids:
            async with http.get(f"{serve.base}/sessions/{SESSION}/agents/{agent_id}/api/status") as r:
                assert r.status in (200, 502, 503), await r.text()
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


async def _absent(api, path: str) -> bool:
    return await get(api, path) is None


async def _replicas(api, namespace: str, agent_id: str) -> int | None:
    sts = await get(api, STATEFULSET.item(namespace, naming.statefulset_name(agent_id)))
    return None if sts is None else sts["spec"]["replicas"]


async def _all_suspended(api, namespace: str, agent_ids: list[str]) -> bool:
    """Every agent's StatefulSet at 0 replicas and its pod gone (one list of each kind)."""
    by_name = {s["metadata"]["name"]: s for s in (await request(api, "GET", STATEFULSET.collection(namespace)))[1]["items"]}
    running = {p["metadata"]["name"] for p in (await request(api, "GET", POD.collection(namespace)))[1]["items"]}
    return all(by_name[naming.statefulset_name(a)]["spec"]["replicas"] == 0
               and naming.pod_name(a) not in running for a in agent_ids)
