"""What a user meets when an agent cannot run, through `agentproxy serve` in k8s mode: the
agent's JSON carries the platform's reason and message and ``GET /events`` streams the
change; a create the platform refuses is answered with the API server's own message and
leaves nothing behind; a proxy without its namespace or its permissions says so.

Image pull failures, OOMKilled and the kubelet's CrashLoopBackOff need a real node and are
tested there (``tests/e2e/real_node``); here kwok's chaos stage fails a container.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import yaml

from .kube import get, request, wait_for
from .served import Served

STORAGE_CLASS = "/apis/storage.k8s.io/v1/storageclasses/kwok-volume"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
CHAOS = "pod-container-running-failed.stage.kwok.x-k8s.io"


class Watch:
    """The ``/events`` of a server, collected from before the first create."""

    def __init__(self, server: Served) -> None:
        self.seen: list[dict] = []
        self._task = asyncio.create_task(self._read(server))

    async def _read(self, server: Served) -> None:
        async for event in server.events():
            self.seen.append(event)

    async def until(self, agent_id: str, status: str, reason: str | None, says: str = "") -> dict:
        """The first event of the agent with this status and reason whose message has ``says``."""
        async def arrived():
            return next((e for e in self.seen if (e["id"], e["status"], e["reason"]) == (agent_id, status, reason)
                         and says in (e["message"] or "")), None)
        return await wait_for(arrived, f"an event of {agent_id} {status} ({reason}) saying {says!r}", timeout=120)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def watch():
    watches: list[Watch] = []

    def start(server: Served) -> Watch:
        watches.append(Watch(server))
        return watches[-1]
    yield start
    for w in watches:
        await w.close()


async def create(server: Served, agent_id: str, **fields) -> dict:
    status, body, _ = await server.call("POST", "/sessions/s/agents", {"id": agent_id, **fields})
    assert status == 201, body
    return body


async def test_an_agent_no_node_can_hold_fails_as_unschedulable(servers, watch):
    server = await servers.start("k8s_mode.resources.cpu_limit=100000")
    events = watch(server)
    await create(server, "huge", resources={"cpu_request": "90000", "cpu_limit": "100000"})
    # kwok's fake provisioner can make the scheduler report the claim first, for a moment.
    await events.until("huge", "failed", "Unschedulable", "Insufficient cpu")
    assert (await server.agent("s", "huge"))["reason"] == "Unschedulable"


async def test_a_volume_without_a_storage_class_fails_with_the_binders_reason(servers, watch, api, namespace):
    # A class that does not exist, and (for a moment) a cluster without a default class.
    server = await servers.start("k8s_mode.storage_class=no-such-class")
    events = watch(server)
    await create(server, "missing")
    default = await servers.start()
    default_events = watch(default)
    before = (await get(api, STORAGE_CLASS))["metadata"]["annotations"][DEFAULT_CLASS]
    merge = {"Content-Type": "application/merge-patch+json"}
    await request(api, "PATCH", STORAGE_CLASS, body={"metadata": {"annotations": {DEFAULT_CLASS: "false"}}},
                  headers=merge)
    try:
        await create(default, "classless")
        # The StatefulSet controller makes the claim a moment after the create: while no class is
        # the default.
        claim = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-classless-0"
        await wait_for(lambda: get(api, claim), "the claim of classless to be made")
    finally:
        await request(api, "PATCH", STORAGE_CLASS, body={"metadata": {"annotations": {DEFAULT_CLASS: before}}},
                      headers=merge)
    event = await events.until("missing", "failed", "ProvisioningFailed")
    assert '"no-such-class" not found' in event["message"] and "data-agent-missing-0" in event["message"]
    event = await default_events.until("classless", "failed", "FailedBinding")
    assert "no storage class is set" in event["message"]


async def test_a_failing_container_is_a_failure_with_its_reason_and_exit_code(servers, watch, api, namespace):
    server = await servers.start()
    events = watch(server)
    await create(server, "crashy")
    await events.until("crashy", "ready", None)
    # kwok's chaos stage fails the container of pods with its label; another manager adds it
    # to the pod template (drift repair leaves fields it does not own alone).
    template = {"metadata": {"labels": {CHAOS: "true"}, "annotations": {
        f"{CHAOS}/reason": "Error", f"{CHAOS}/exit-code": "2", f"{CHAOS}/message": "boom"}}}
    await request(api, "PATCH", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-crashy",
                  body={"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "metadata": {"name": "agent-crashy", "namespace": namespace},
                        "spec": {"template": template}},
                  headers={"Content-Type": "application/apply-patch+yaml"},
                  params={"fieldManager": "chaos-test", "force": "true"})
    event = await events.until("crashy", "failed", "Error")
    assert event["message"] == "Error (exit code 2): boom"


async def test_a_quota_refuses_a_create_with_its_message_or_fails_the_pod(servers, watch, api, namespace):
    server = await servers.start()
    quotas = f"/api/v1/namespaces/{namespace}/resourcequotas"
    await request(api, "POST", quotas, body={"apiVersion": "v1", "kind": "ResourceQuota",
                                             "metadata": {"name": "no-statefulsets"},
                                             "spec": {"hard": {"count/statefulsets.apps": "0"}}})
    await wait_for(lambda: _counted(api, f"{quotas}/no-statefulsets"), "the quota to be counted")
    status, body, _ = await server.call("POST", "/sessions/s/agents", {"id": "refused"})
    assert status == 422 and body["error"]["code"] == "rejected", body
    assert "exceeded quota: no-statefulsets" in body["error"]["message"]
    for path in (f"/api/v1/namespaces/{namespace}/configmaps/agent-refused-config",
                 f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-refused-0"):
        obj = await get(api, path)
        assert obj is None or obj["metadata"].get("deletionTimestamp"), path
    assert (await server.call("GET", "/sessions/s/agents/refused"))[0] == 404

    # A quota the pod breaks: the StatefulSet is accepted, its controller cannot create the pod.
    await request(api, "DELETE", f"{quotas}/no-statefulsets")
    await request(api, "POST", quotas, body={"apiVersion": "v1", "kind": "ResourceQuota",
                                             "metadata": {"name": "tiny-cpu"}, "spec": {"hard": {"requests.cpu": "10m"}}})
    await wait_for(lambda: _counted(api, f"{quotas}/tiny-cpu"), "the quota to be counted")
    events = watch(server)
    await create(server, "starved")
    event = await events.until("starved", "failed", "FailedCreate")
    assert "exceeded quota: tiny-cpu" in event["message"]


async def _counted(api, path):
    quota = await get(api, path)
    return quota and (quota.get("status") or {}).get("hard")


async def test_a_missing_namespace_stops_the_server_with_one_line(servers):
    server = await servers.start("k8s_mode.namespace=no-such-namespace", ready=False)
    assert await server.proc.wait() == 1
    lines = [line for line in server.output().splitlines() if "error" in line.lower()]
    assert lines[-1] == ("agentproxy: error: the k8s backend cannot start: the namespace 'no-such-namespace' does not "
                         "exist (k8s_mode.namespace): create it, or point k8s_mode.namespace at one that does"), lines
    assert "Traceback" not in server.output()


async def test_credentials_without_a_permission_name_the_verb_and_resource(servers, api, namespace, kubeconfig,
                                                                            tmp_path):
    # The proxy runs as a ServiceAccount whose Role lacks patch on StatefulSets.
    base = f"/api/v1/namespaces/{namespace}"
    await request(api, "POST", f"{base}/serviceaccounts", body={"apiVersion": "v1", "kind": "ServiceAccount",
                                                                "metadata": {"name": "limited"}})
    rules = [{"apiGroups": ["apps"], "resources": ["statefulsets"], "verbs": ["get", "list", "watch", "delete"]},
             {"apiGroups": [""], "resources": ["services", "configmaps", "persistentvolumeclaims"],
              "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
             {"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["get", "list", "watch"]}]
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    await request(api, "POST", f"{rbac}/roles", body={"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                                                      "metadata": {"name": "limited"}, "rules": rules})
    await request(api, "POST", f"{rbac}/rolebindings", body={
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "limited"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "limited"},
        "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": namespace}]})
    _, token = await request(api, "POST", f"{base}/serviceaccounts/limited/token",
                             body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                   "spec": {"expirationSeconds": 600}})
    admin = yaml.safe_load(open(kubeconfig))
    limited = tmp_path / "limited.kubeconfig"
    limited.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": admin["clusters"],
        "users": [{"name": "limited", "user": {"token": token["status"]["token"]}}],
        "contexts": [{"name": "limited", "context": {"cluster": admin["clusters"][0]["name"], "user": "limited"}}],
        "current-context": "limited"}))
    limited.chmod(0o600)

    server = await servers.start(f"k8s_mode.kubeconfig={limited}")
    status, body, _ = await server.call("POST", "/sessions/s/agents", {"id": "unlucky"})
    assert status == 403 and body["error"]["code"] == "forbidden", body
    message = body["error"]["message"]
    assert message.startswith("the proxy's credentials may not patch statefulsets: ")
    assert f"system:serviceaccount:{namespace}:limited" in message
    for path in (f"{base}/configmaps/agent-unlucky-config", f"{base}/persistentvolumeclaims/data-agent-unlucky-0"):
        obj = await get(api, path)
        assert obj is None or obj["metadata"].get("deletionTimestamp"), path
