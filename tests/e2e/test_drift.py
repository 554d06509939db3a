"""Drift repair on a running `agentproxy serve`: out-of-band edits of every object kind are
reverted, fields of other managers stay, a PVC raised out of band is not shrunk, and each
repair is counted in /metrics; with two replicas, each drift is repaired and counted once."""

from __future__ import annotations

import asyncio

import pytest

from .kube import get, request, wait_for
from .served import counted

STORAGE_CLASS = "/apis/storage.k8s.io/v1/storageclasses/kwok-volume"


@pytest.fixture
async def expandable_volumes(api):
    """The cluster's default StorageClass allows volume expansion for the test (a PVC can
    only be raised then), and is put back as it was."""
    before = await get(api, STORAGE_CLASS)
    assert before is not None, "the test cluster has no kwok-volume StorageClass"
    merge = {"Content-Type": "application/merge-patch+json"}
    await request(api, "PATCH", STORAGE_CLASS, body={"allowVolumeExpansion": True}, headers=merge)
    yield
    await request(api, "PATCH", STORAGE_CLASS, body={"allowVolumeExpansion": before.get("allowVolumeExpansion")},
                  headers=merge)


async def patch(api, path: str, body, kind: str = "merge", manager: str = "kubectl-edit"):
    """An edit by another field manager (``kind``: merge or json patch)."""
    content = {"merge": "application/merge-patch+json", "json": "application/json-patch+json"}[kind]
    await request(api, "PATCH", path, body=body, headers={"Content-Type": content},
                  params={"fieldManager": manager})


async def test_out_of_band_edits_of_every_kind_are_reverted_and_others_fields_stay(
        servers, api, namespace, expandable_volumes):
    server = await servers.start()
    status, body, _ = await server.call("POST", "/sessions/s/agents", {"id": "kept", "env": {"MODE": "calm"}})
    assert status == 201, body

    async def ready():
        agent = await server.agent("s", "kept")
        return agent and agent["status"] == "ready"
    await wait_for(ready, "the agent to be ready")

    ns = f"/api/v1/namespaces/{namespace}"
    sts, svc = f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-kept", f"{ns}/services/agent-kept-headless"
    cm, pvc = f"{ns}/configmaps/agent-kept-config", f"{ns}/persistentvolumeclaims/data-agent-kept-0"
    foreign = {"metadata": {"labels": {"team.example.com/owner": "platform"}}}

    # Fields agentproxy owns, changed or removed by others; and fields of their own beside them.
    await patch(api, sts, [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "other:1"},
                           {"op": "replace", "path": "/spec/replicas", "value": 0}], "json")
    await patch(api, sts, foreign, manager="team-controller")
    await patch(api, svc, [{"op": "replace", "path": "/spec/publishNotReadyAddresses", "value": False},
                           {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1component"}], "json")
    await patch(api, cm, {"data": {"MODE": "tampered"}, **foreign})
    await patch(api, pvc, [{"op": "remove", "path": "/metadata/labels/agentproxy.io~1session"},
                           {"op": "replace", "path": "/spec/resources/requests/storage", "value": "2Gi"}], "json")

    async def repaired():
        s, v, c, p = [await get(api, path) for path in (sts, svc, cm, pvc)]
        return (s["spec"]["template"]["spec"]["containers"][0]["image"] == "agentapi-proxy:latest"
                and s["spec"]["replicas"] == 1
                and v["spec"].get("publishNotReadyAddresses") is True
                and v["metadata"]["labels"].get("app.kubernetes.io/component") == "agent"
                and c["data"]["MODE"] == "calm"
                and p["metadata"]["labels"].get("agentproxy.io/session") == "s") and (s, c, p)
    try:
        s, c, p = await wait_for(repaired, "every out-of-band edit to be reverted")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the server's log:\n{server.output()[-5000:]}") from None
    assert s["metadata"]["labels"]["team.example.com/owner"] == "platform"
    assert c["metadata"]["labels"]["team.example.com/owner"] == "platform"
    assert p["spec"]["resources"]["requests"]["storage"] == "2Gi"  # raised out of band: kept

    status, text, _ = await server.call("GET", "/metrics")
    for kind in ("StatefulSet", "Service", "ConfigMap", "PersistentVolumeClaim"):
        line = next(x for x in text.splitlines() if x.startswith(f'agentproxy_k8s_drift_repairs_total{{kind="{kind}"}}'))
        assert float(line.split()[-1]) >= 1, line
    assert "drift repair: applying StatefulSet agent-kept again; changed out of band: " in server.output()

    # A deleted Service comes back; the agent stays ready throughout.
    await request(api, "DELETE", svc)
    await wait_for(lambda: get(api, svc), "the deleted Service to come back")
    await wait_for(ready, "the agent to be ready")


async def repairs_of(server, kind: str) -> float:
    return counted(await server.metrics(), "agentproxy_k8s_drift_repairs_total", kind=kind)


async def test_two_replicas_repair_each_drift_once(servers, api, namespace):
    """Both replicas see each out-of-band edit and compare at once; the repair is applied at the
    version compared, so one of them repairs it and the other's apply is refused (409): each
    drift is repaired, and counted, once in all."""
    a, b = await servers.start(), await servers.start()
    ids = [f"twice{i}" for i in range(4)]
    for agent_id in ids:
        status, body, _ = await a.call("POST", "/sessions/s/agents", {"id": agent_id})
        assert status == 201, body

    async def listed_on_b():
        status, body, _ = await b.call("GET", "/sessions/s/agents")
        return status == 200 and len(body["agents"]) == len(ids)
    await wait_for(listed_on_b, "the other replica to list the agents")
    before = [await repairs_of(s, "Service") for s in (a, b)]

    services = [f"/api/v1/namespaces/{namespace}/services/agent-{agent_id}-headless" for agent_id in ids]
    for path in services:
        await patch(api, path, [{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1component"}], "json")

    async def all_back():
        labels = [(await get(api, path))["metadata"]["labels"] for path in services]
        return all(x.get("app.kubernetes.io/component") == "agent" for x in labels)
    await wait_for(all_back, "every edited Service to be repaired")

    async def counted_once():
        after = [await repairs_of(s, "Service") for s in (a, b)]
        return sum(after) - sum(before) == len(ids) and after
    try:
        await wait_for(counted_once, "one repair per drift in all", timeout=10)
    except AssertionError:
        after = [await repairs_of(s, "Service") for s in (a, b)]
        raise AssertionError(f"repairs before {before}, after {after} for {len(ids)} drifts") from None
    # Settled: no later pass repairs anything again.
    await asyncio.sleep(2)
    assert sum([await repairs_of(s, "Service") for s in (a, b)]) - sum(before) == len(ids)
