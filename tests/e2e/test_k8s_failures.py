"""The k8s backend when things go wrong: RBAC with and without the shipped Role,
admission and quota rejections, an unreachable API server, failure reasons, and
an API server restart in the middle of a watch."""

from __future__ import annotations

import asyncio
import itertools
import os

import pytest

from agentproxy.backends.base import AgentStatus, Forbidden, Rejected, Unavailable
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.render import render_rbac
from agentproxy.spec import build_spec

from .agents import SESSION, settings_for, until_status
from .kube import get, request, server_side_apply, wait_for


class ImpersonatingClient(Client):
    """Sends every request, watches included, as a ServiceAccount, as the proxy would run in-cluster."""

    def __init__(self, api, namespace: str, service_account: str) -> None:
        super().__init__(api, headers={"Impersonate-User": f"system:serviceaccount:{namespace}:{service_account}"})


async def test_backend_works_with_exactly_the_shipped_role(api, namespace):
    settings = settings_for(namespace)
    for obj in render_rbac(settings, "agentproxy"):
        await server_side_apply(api, obj)
    backend = K8sBackend(settings, client=ImpersonatingClient(api, namespace, "agentproxy"))
    await backend.start()
    try:
        await backend.create(build_spec(settings, SESSION, "scoped"))
        await until_status(backend, "scoped", AgentStatus.READY)
        await backend.delete(SESSION, "scoped", purge=True)
        await wait_for(lambda: _no_agent(backend, "scoped"), "the agent to be deleted")
    finally:
        await backend.close()


async def _no_agent(backend, agent_id):
    return backend.state_of(agent_id) is None


async def test_without_the_role_create_fails_clearly_and_leaves_nothing(api, namespace):
    settings = settings_for(namespace)
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                  body={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody"}})
    client = ImpersonatingClient(api, namespace, "nobody")
    with pytest.raises(Forbidden) as error:
        await client.request("GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets", verb="list",
                             resource="statefulsets")
    assert "may not list statefulsets" in error.value.message
    assert f"system:serviceaccount:{namespace}:nobody" in error.value.message

    backend = K8sBackend(settings, client=client, backoff_max=0.5, start_timeout=5)
    with pytest.raises(Forbidden, match="may not list"):
        await backend.start()
    await backend.close()


async def test_admission_rejection_passes_the_message_through_and_leaves_no_half_agent(api, backend, namespace):
    # A quota that allows no StatefulSet: the claim and the PVC go through, the
    # StatefulSet is refused, and everything made for the agent is rolled back.
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/resourcequotas", body={
        "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-statefulsets"},
        "spec": {"hard": {"count/statefulsets.apps": "0"}}})

    async def quota_ready():
        q = await get(api, f"/api/v1/namespaces/{namespace}/resourcequotas/no-statefulsets")
        return q and (q.get("status") or {}).get("hard")
    await wait_for(quota_ready, "the quota to be counted")

    spec = build_spec(backend.settings, SESSION, "refused")
    with pytest.raises(Rejected) as error:
        await backend.create(spec)
    assert "exceeded quota" in error.value.message
    for path in (f"/api/v1/namespaces/{namespace}/configmaps/agent-refused-config",
                 f"/api/v1/namespaces/{namespace}/services/agent-refused-headless",
                 f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-refused-0"):
        obj = await get(api, path)
        assert obj is None or obj["metadata"].get("deletionTimestamp"), path

    await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/resourcequotas/no-statefulsets")
    await wait_for(lambda: _absent_quota(api, namespace), "the quota to go")
    # kwok's fake provisioner binds a new claim of an old name to the old claim's volume while
    # that is still being released (the claim is then Lost): let the rolled-back claim go first.
    await wait_for(lambda: _absent(api, f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-refused-0"),
                   "the rolled-back claim to be gone")
    await wait_for(lambda: _no_volume_of(api, namespace, "data-agent-refused-0"), "its volume to be gone")
    # The next create of the same id does not trip over leftovers.
    await backend.create(spec)
    await until_status(backend, "refused", AgentStatus.READY)


async def _absent(api, path):
    return await get(api, path) is None


async def _no_volume_of(api, namespace, claim):
    _, volumes = await request(api, "GET", "/api/v1/persistentvolumes")
    return not any((v["spec"].get("claimRef") or {}).get("namespace") == namespace and
                   v["spec"]["claimRef"].get("name") == claim for v in volumes.get("items", []))


async def _absent_quota(api, namespace):
    return await get(api, f"/api/v1/namespaces/{namespace}/resourcequotas/no-statefulsets") is None


async def test_unschedulable_agent_fails_with_the_schedulers_reason(backend):
    roomy = settings_for(backend.namespace, "k8s_mode.resources.cpu_limit=100000")
    spec = build_spec(roomy, SESSION, "huge", resources={"cpu_request": "90000", "cpu_limit": "100000"})
    await backend.create(spec)
    async def unschedulable():
        state = await backend.get(SESSION, "huge")
        if state.status == AgentStatus.FAILED and state.reason == "Unschedulable" and \
                "Insufficient cpu" in (state.message or ""):
            return state
        return None
    # kwok's fake provisioner can make the claim look Lost, or bound to a volume not created
    # yet, for a moment first: the scheduler then reports that before the CPU it lacks.
    await wait_for(unschedulable, "the agent to fail as Unschedulable for lack of CPU")


async def test_unreachable_api_server_is_a_clear_unavailable_error(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("""apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: "t"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
""")
    with pytest.raises(Unavailable, match="cannot be reached"):
        client = await Client.connect(str(kubeconfig))  # kr8s may ask the server already
        try:
            await client.request("GET", "/api/v1/namespaces/default/configmaps")
        finally:
            await client.close()


@pytest.fixture
def restart_apiserver():
    """Restarts the local control plane's API server; other clusters cannot be
    restarted from a test, so there the test is skipped."""
    if os.environ.get("AGENTPROXY_TEST_LOCAL_CONTROL_PLANE") != "1":
        pytest.skip("needs the local control plane (just test) to restart its API server")
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]

    # The cluster whose directory holds $KUBECONFIG, whatever AGENTPROXY_CLUSTER_DIR says.
    env = {**os.environ, "AGENTPROXY_CLUSTER_DIR": str(Path(os.environ["KUBECONFIG"]).resolve().parent)}

    async def restart():
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "testenv.cluster", "restart", "kube-apiserver",
                                                    env=env, cwd=root)
        assert await proc.wait() == 0
    return restart


async def test_status_resumes_after_an_api_server_restart_without_duplicates(backend, restart_apiserver):
    events = []

    async def collect():
        async for event in backend.events():
            a = event.agent
            events.append((event.type, a.id, a.status, a.reason, a.message, a.upstream, a.restarts))
    collector = asyncio.create_task(collect())
    await backend.create(build_spec(backend.settings, SESSION, "before"))
    await until_status(backend, "before", AgentStatus.READY)
    await restart_apiserver()
    # What the proxy itself changes shows up again once its watches resume;
    # (how fast the cluster's own controllers recover is not the proxy's business).
    await backend.create(build_spec(backend.settings, SESSION, "after"))
    await wait_for(lambda: _listed(backend, "after"), "the agent created after the restart to be listed")
    await backend.delete(SESSION, "before")
    await wait_for(lambda: _deleted_event(events, "before"), "the deletion to arrive as an event")
    collector.cancel()
    assert len([e for e in events if e[:2] == ("added", "before")]) == 1
    before = [e for e in events if e[1] == "before"]
    assert all(a != b for a, b in itertools.pairwise(before)), before


async def _listed(backend, agent_id):
    return agent_id in {s.id for s in await backend.list()}


async def _deleted_event(events, agent_id):
    return any(e[:2] == ("deleted", agent_id) for e in events)


class ChangedBeforeApply(Client):
    """The real client, except that before each of its first :attr:`changes` applies of a
    StatefulSet it really changes that StatefulSet (an annotation of another manager), as the
    StatefulSet controller's status writes do now and then while an agent starts: each of those
    applies meets a newer version than the one it was read at, and the server refuses it (409)."""

    def __init__(self, api, changes: int) -> None:
        super().__init__(api)
        self.changes = changes

    async def request(self, method, path, **kwargs):
        if (method == "PATCH" and "/statefulsets/" in path and self.changes
                and kwargs.get("content_type") == "application/apply-patch+yaml"):
            self.changes -= 1
            await super().request("PATCH", path, body={"metadata": {"annotations": {"example.com/busy": str(self.changes)}}},
                                  content_type="application/merge-patch+json")
        return await super().request(method, path, **kwargs)


async def test_a_suspend_outlasts_a_statefulset_changed_at_each_of_its_first_tries(api, namespace):
    """Four changes in a row between the read and the apply: the suspend reads again after a
    pause each time and goes through on the fifth try (it gave up after the third before)."""
    client = ChangedBeforeApply(api, changes=0)
    backend = K8sBackend(settings_for(namespace), client=client)
    await backend.start()
    try:
        await backend.create(build_spec(backend.settings, SESSION, "busy", "echo"))
        await until_status(backend, "busy", AgentStatus.READY)
        client.changes = 4
        state = await backend.suspend(SESSION, "busy")
        assert client.changes == 0 and state.suspended
        sts = await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-busy")
        assert sts["spec"]["replicas"] == 0 and sts["metadata"]["annotations"]["example.com/busy"] == "0"
    finally:
        await backend.close()
