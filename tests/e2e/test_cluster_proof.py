"""The rendered manifests against a real API server: server-side apply, the
StatefulSet's pod and claim, Pod Security admission, RBAC with the shipped Role,
and garbage collection through ownerReferences."""

from __future__ import annotations

import ipaddress

import kr8s
import pytest

from agentproxy import naming
from agentproxy.render import render_agent, render_rbac
from agentproxy.settings import load_settings
from agentproxy.spec import build_spec

from .kube import condition, get, request, server_side_apply, wait_for

SESSION = "e2e-session"


def _settings(namespace: str):
    return load_settings(overrides=[f"k8s_mode.namespace={namespace}"], environ={}).settings


def _manifests(namespace: str, agent_id: str) -> list[dict]:
    settings = _settings(namespace)
    return render_agent(settings, build_spec(settings, SESSION, agent_id))


def _path(namespace: str, kind: str, name: str) -> str:
    core = {"ConfigMap": "configmaps", "Service": "services", "PersistentVolumeClaim": "persistentvolumeclaims",
            "Pod": "pods"}
    if kind == "StatefulSet":
        return f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"
    return f"/api/v1/namespaces/{namespace}/{core[kind]}/{name}"


async def _apply_all(api, objects, **kwargs) -> list[dict]:
    return [await server_side_apply(api, obj, **kwargs) for obj in objects]


async def _ready_pod(api, namespace: str, agent_id: str) -> dict:
    async def ready():
        pod = await get(api, _path(namespace, "Pod", naming.pod_name(agent_id)))
        return pod if condition(pod, "Ready") else None
    return await wait_for(ready, f"pod {naming.pod_name(agent_id)} to become Ready")


async def test_rendered_manifests_apply_create_pod_and_bind_claim(api, namespace, pod_cidr):
    objects = _manifests(namespace, "proof")
    applied = await _apply_all(api, objects)
    assert [o["metadata"]["name"] for o in applied] == [
        "agent-proof-config", "agent-proof-headless", "data-agent-proof-0", "agent-proof"]

    pod = await _ready_pod(api, namespace, "proof")
    claim_names = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                   if "persistentVolumeClaim" in v]
    assert claim_names == ["data-agent-proof-0"]

    async def bound():
        pvc = await get(api, _path(namespace, "PersistentVolumeClaim", "data-agent-proof-0"))
        return pvc if pvc and pvc["status"].get("phase") == "Bound" else None
    await wait_for(bound, "claim data-agent-proof-0 to be Bound")

    pod_ip = ipaddress.ip_address(pod["status"]["podIP"])
    if pod_cidr is not None:
        assert pod_ip in pod_cidr, f"pod IP {pod_ip} is outside {pod_cidr}"

    # Once the controllers have settled, applying the same manifests again
    # changes nothing: every object keeps its resourceVersion.
    async def settled():
        sts = await get(api, _path(namespace, "StatefulSet", "agent-proof"))
        return sts if sts["status"].get("readyReplicas") == 1 else None
    await wait_for(settled, "the StatefulSet to report one ready replica")
    before = {o["kind"]: (await get(api, _path(namespace, o["kind"], o["metadata"]["name"])))["metadata"]
              ["resourceVersion"] for o in objects}
    again = await _apply_all(api, objects)
    assert {o["kind"]: o["metadata"]["resourceVersion"] for o in again} == before


async def test_server_side_dry_run_changes_nothing(api, namespace):
    objects = _manifests(namespace, "dry")
    result = await _apply_all(api, objects, dry_run=True)
    assert [o["kind"] for o in result] == ["ConfigMap", "Service", "PersistentVolumeClaim", "StatefulSet"]
    for obj in objects:
        assert await get(api, _path(namespace, obj["kind"], obj["metadata"]["name"])) is None


async def test_restricted_namespace_admits_rendered_pod_and_rejects_privileged_one(api, namespace):
    labels = (await get(api, f"/api/v1/namespaces/{namespace}"))["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    template = _manifests(namespace, "pss")[-1]["spec"]["template"]
    rendered_pod = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "rendered", "namespace": namespace, "labels": template["metadata"]["labels"]},
                    "spec": {**template["spec"], "volumes": [{"name": "data", "emptyDir": {}}]}}
    status, _ = await request(api, "POST", f"/api/v1/namespaces/{namespace}/pods", body=rendered_pod,
                              params={"dryRun": "All"})
    assert status == 201

    privileged = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "privileged", "namespace": namespace},
                  "spec": {"containers": [{"name": "c", "image": "agentapi-proxy:latest",
                                           "securityContext": {"privileged": True}}]}}
    status, body = await request(api, "POST", f"/api/v1/namespaces/{namespace}/pods", body=privileged,
                                 ok=(403,))
    assert status == 403
    assert 'violates PodSecurity "restricted' in body["message"]
    assert "privileged" in body["message"]


def _as(namespace: str, service_account: str) -> dict[str, str]:
    return {"Impersonate-User": f"system:serviceaccount:{namespace}:{service_account}"}


async def test_rbac_denies_without_role_and_allows_with_shipped_role(api, namespace):
    settings = _settings(namespace)
    for obj in render_rbac(settings, "agentproxy"):
        await server_side_apply(api, obj)
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "no-role"}})
    objects = _manifests(namespace, "rbac")

    with pytest.raises(kr8s.ServerError) as denied:
        await server_side_apply(api, objects[0], headers=_as(namespace, "no-role"))
    assert denied.value.response.status_code == 403
    assert "cannot patch resource \"configmaps\"" in str(denied.value)

    applied = await _apply_all(api, objects, headers=_as(namespace, "agentproxy"))
    assert [o["kind"] for o in applied] == ["ConfigMap", "Service", "PersistentVolumeClaim", "StatefulSet"]
    status, pods = await request(api, "GET", f"/api/v1/namespaces/{namespace}/pods",
                                 headers=_as(namespace, "agentproxy"),
                                 params={"labelSelector": naming.MANAGED_SELECTOR})
    assert status == 200 and isinstance(pods["items"], list)

    # The Role is namespaced and narrow: no Secrets, nothing in other namespaces.
    status, _ = await request(api, "GET", f"/api/v1/namespaces/{namespace}/secrets",
                              headers=_as(namespace, "agentproxy"), ok=(403,))
    assert status == 403
    status, _ = await request(api, "GET", "/api/v1/namespaces/default/configmaps",
                              headers=_as(namespace, "agentproxy"), ok=(403,))
    assert status == 403


async def test_deleting_statefulset_collects_pod_and_owned_objects_but_keeps_claim(api, namespace):
    objects = _manifests(namespace, "gc")
    applied = await _apply_all(api, objects)
    sts = applied[-1]
    await _ready_pod(api, namespace, "gc")
    owned = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "owned-by-agent-gc", "namespace": namespace, "ownerReferences": [{
                 "apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"],
                 "uid": sts["metadata"]["uid"]}]}}
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body=owned)

    await request(api, "DELETE", _path(namespace, "StatefulSet", "agent-gc"),
                  body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})

    async def gone(kind: str, name: str):
        return await get(api, _path(namespace, kind, name)) is None
    await wait_for(lambda: gone("StatefulSet", "agent-gc"), "the StatefulSet to be deleted")
    await wait_for(lambda: gone("Pod", "agent-gc-0"), "the pod to be garbage-collected")
    await wait_for(lambda: gone("ConfigMap", "owned-by-agent-gc"), "the owned ConfigMap to be garbage-collected")
    # whenDeleted: Retain keeps the agent's data.
    assert await get(api, _path(namespace, "PersistentVolumeClaim", "data-agent-gc-0")) is not None
