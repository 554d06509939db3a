"""The k8s backend against a real API server: create, status from the shared
cache, idempotency and conflicts, delete with and without purge, restart
reconstruction, and the controller's re-apply and prune."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from agentproxy import naming
from agentproxy.backends.base import AgentStatus, Conflict, NotFound, Rejected
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.cache import NamespaceCache
from agentproxy.backends.k8s.client import Client
from agentproxy.spec import build_spec

from .agents import SESSION, settings_for, until_status
from .kube import get, request, wait_for


async def test_create_returns_pending_then_becomes_ready_with_routable_pod_ip(backend, pod_cidr):
    spec = build_spec(backend.settings, SESSION, "alpha", env={"GREETING": "hello"})
    state = await backend.create(spec)
    assert state.status == AgentStatus.PENDING
    assert state.details["statefulset"] == "agent-alpha"
    ready = await until_status(backend, "alpha", AgentStatus.READY)
    assert ready.upstream == f"http://{ready.details['pod_ip']}:3284"
    if pod_cidr is not None:
        import ipaddress
        assert ipaddress.ip_address(ready.details["pod_ip"]) in pod_cidr
    assert [s.id for s in await backend.list(session=SESSION)] == ["alpha"]
    assert await backend.list(session="other") == []
    with pytest.raises(NotFound):
        await backend.get("other", "alpha")


async def test_get_and_list_make_no_api_calls(backend):
    for i in range(5):
        await backend.create(build_spec(backend.settings, SESSION, f"quiet-{i}"))
    await wait_for(lambda: _count(backend, 5), "five agents in the cache")
    before = backend.client.calls
    for _ in range(20):
        await backend.list()
        await backend.get(SESSION, "quiet-3")
    assert backend.client.calls == before


async def test_a_create_writes_its_objects_in_three_requests_and_reads_none(backend, monkeypatch):
    """A create is the claim's POST (the ConfigMap, with all it holds), then one apply each of
    the StatefulSet and the Service (owned by it); the PVC is the StatefulSet controller's, and
    the claim's own answer is the stored ConfigMap: nothing of the agent is read back."""
    sent: list[tuple[str, str]] = []
    request = backend.client.request

    async def recording(method, path, **kwargs):
        body = kwargs.get("body") or {}
        name = (body.get("metadata") or {}).get("name", "") if isinstance(body, dict) else ""
        if "agent-counted" in path or name.startswith("agent-counted"):
            sent.append((method, path.rsplit("/", 2)[-2] if method != "POST" else path.rsplit("/", 1)[-1]))
        return await request(method, path, **kwargs)

    monkeypatch.setattr(backend.client, "request", recording)
    await backend.create(build_spec(backend.settings, SESSION, "counted"))
    assert sent == [("POST", "configmaps"), ("PATCH", "statefulsets"), ("PATCH", "services")]


async def _count(backend, n):
    return len(await backend.list()) == n


async def test_a_paged_list_fills_the_cache_as_one_list_does(backend):
    """Lists are read in pages (a continue token per page): with pages of two, five agents'
    objects come in three requests per kind, and the cache holds what the one-page cache holds."""
    for i in range(5):
        await backend.create(build_spec(backend.settings, SESSION, f"paged-{i}"))
    await wait_for(lambda: _count(backend, 5), "five agents in the cache")
    paged = NamespaceCache(backend.client, backend.namespace, lambda *event: None, page_size=2)
    before = backend.client.calls
    await paged.start()
    try:
        configmaps = paged.reflectors["ConfigMap"]
        assert set(configmaps.store) == set(backend.cache.reflectors["ConfigMap"].store)
        assert {n for n in configmaps.store if n.startswith("agent-paged-")} == {
            f"agent-paged-{i}-config" for i in range(5)}
        assert configmaps.relists == 1 and configmaps.resource_version
        # Three pages for each kind with five objects or more (ConfigMaps, Services, PVCs,
        # StatefulSets), at least one request for every other list, and one watch each.
        assert backend.client.calls - before >= 4 * 3
        assert {a for a in paged.agent_ids() if a.startswith("paged-")} == {f"paged-{i}" for i in range(5)}
    finally:
        await paged.close()


async def test_create_is_idempotent_and_conflicts_on_a_different_spec(backend, api, namespace):
    spec = build_spec(backend.settings, SESSION, "same")
    await backend.create(spec)
    again = await backend.create(spec)
    assert again.id == "same"
    with pytest.raises(Conflict):
        await backend.create(build_spec(backend.settings, SESSION, "same", env={"X": "1"}))
    with pytest.raises(Conflict):
        await backend.create(build_spec(backend.settings, "other-session", "same"))


async def test_fifty_concurrent_creates_of_one_id_make_one_statefulset(api, namespace):
    # Separate backends stand for separate proxy replicas racing each other.
    backends = [K8sBackend(settings_for(namespace), client=Client(api)) for _ in range(5)]
    await asyncio.gather(*(b.start() for b in backends))
    try:
        spec = build_spec(backends[0].settings, SESSION, "racer")
        results = await asyncio.gather(*(backends[i % 5].create(spec) for i in range(50)), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        _, body = await request(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                                params={"labelSelector": f"{naming.LABEL_AGENT_ID}=racer"})
        assert [i["metadata"]["name"] for i in body["items"]] == ["agent-racer"]

        other = build_spec(backends[0].settings, SESSION, "contested", env={"N": "0"})
        rivals = [build_spec(backends[0].settings, SESSION, "contested", env={"N": str(i)}) for i in range(10)]
        outcomes = await asyncio.gather(*(backends[i % 5].create(s) for i, s in enumerate([other, *rivals])),
                                        return_exceptions=True)
        winners = {o.spec.env["N"] for o in outcomes if not isinstance(o, BaseException)}
        assert len(winners) == 1, f"more than one spec won: {winners}"
        assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    finally:
        await asyncio.gather(*(b.close() for b in backends))


async def test_delete_keeps_data_and_recreate_reuses_it_purge_removes_it(backend, api, namespace):
    spec = build_spec(backend.settings, SESSION, "keeper")
    await backend.create(spec)
    await until_status(backend, "keeper", AgentStatus.READY)
    pvc_path = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-keeper-0"
    pvc_uid = (await get(api, pvc_path))["metadata"]["uid"]

    stopping = await backend.delete(SESSION, "keeper")
    assert stopping.status == AgentStatus.STOPPING
    await wait_for(lambda: _absent(backend, "keeper"), "the agent to disappear from the cache")
    for path in (f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-keeper",
                 f"/api/v1/namespaces/{namespace}/services/agent-keeper-headless",
                 f"/api/v1/namespaces/{namespace}/configmaps/agent-keeper-config"):
        assert await get(api, path) is None, path
    assert (await get(api, pvc_path))["metadata"]["uid"] == pvc_uid

    await backend.create(spec)
    await until_status(backend, "keeper", AgentStatus.READY)
    assert (await get(api, pvc_path))["metadata"]["uid"] == pvc_uid

    await backend.delete(SESSION, "keeper", purge=True)
    await wait_for(lambda: _gone(api, pvc_path), "the purged claim to be deleted")
    with pytest.raises(NotFound):
        await backend.delete(SESSION, "keeper")


async def _absent(backend, agent_id):
    try:
        await backend.get(SESSION, agent_id)
    except NotFound:
        return True
    return False


async def _gone(api, path):
    obj = await get(api, path)
    return obj is None or bool(obj["metadata"].get("deletionTimestamp"))


async def test_a_restarted_proxy_rebuilds_everything_from_the_cluster(backend, api, namespace):
    for agent_id in ("one", "two"):
        await backend.create(build_spec(backend.settings, SESSION, agent_id, message="hi"))
    await until_status(backend, "two", AgentStatus.READY)
    await until_status(backend, "one", AgentStatus.READY)
    fresh = K8sBackend(settings_for(namespace), client=Client(api))
    await fresh.start()
    try:
        old = {(s.id, s.status, s.spec) for s in await backend.list()}
        new = {(s.id, s.status, s.spec) for s in await fresh.list()}
        assert new == old and len(new) == 2
    finally:
        await fresh.close()


async def test_out_of_band_deletion_and_edit_are_repaired(backend, api, namespace):
    await backend.create(build_spec(backend.settings, SESSION, "healer", env={"MODE": "calm"}))
    await until_status(backend, "healer", AgentStatus.READY)
    svc = f"/api/v1/namespaces/{namespace}/services/agent-healer-headless"
    cm = f"/api/v1/namespaces/{namespace}/configmaps/agent-healer-config"
    old_uid = (await get(api, svc))["metadata"]["uid"]
    await request(api, "DELETE", svc)

    async def service_back():
        obj = await get(api, svc)
        return obj if obj and obj["metadata"]["uid"] != old_uid else None
    await wait_for(service_back, "the deleted Service to be re-applied", timeout=30)

    await request(api, "PATCH", cm, body={"data": {"MODE": "tampered"}},
                  headers={"Content-Type": "application/merge-patch+json"})

    async def restored():
        obj = await get(api, cm)
        return obj if obj and obj["data"].get("MODE") == "calm" else None
    await wait_for(restored, "the edited ConfigMap to be restored", timeout=30)


async def test_labelled_objects_that_are_no_longer_rendered_are_pruned(backend, api, namespace):
    await backend.create(build_spec(backend.settings, SESSION, "tidy"))
    await until_status(backend, "tidy", AgentStatus.READY)
    stray = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "agent-tidy-old-extra", "labels": naming.standard_labels("tidy", SESSION)}}
    await request(api, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body=stray)
    path = f"/api/v1/namespaces/{namespace}/configmaps/agent-tidy-old-extra"
    await wait_for(lambda: _gone(api, path), "the stray ConfigMap to be pruned", timeout=30)
    assert await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-tidy-config") is not None


async def test_a_forced_410_relists_and_the_cache_stays_right(backend):
    await backend.create(build_spec(backend.settings, SESSION, "gone"))
    await until_status(backend, "gone", AgentStatus.READY)
    pods = backend.cache.reflectors["Pod"]
    relists = pods.relists
    pods.resource_version = "1"  # far older than anything the API server keeps
    backend.cache.restart_watches()
    # An API server whose etcd history has been compacted answers 410 Gone and
    # the reflector relists; a young one may still replay from there instead.
    await wait_for(lambda: _recovered(pods, relists), "the pod reflector to relist or resume")
    await backend.create(build_spec(backend.settings, SESSION, "after"))
    await until_status(backend, "after", AgentStatus.READY)
    assert {s.id for s in await backend.list()} == {"gone", "after"}


async def _recovered(reflector, before):
    return reflector.relists > before or (reflector.resource_version != "1" and reflector.healthy)


async def test_status_events_follow_an_agent_through_its_life(backend):
    events = []

    async def collect():
        async for event in backend.events():
            a = event.agent
            events.append((event.type, a.id, a.status, a.reason, a.message, a.upstream, a.restarts))
            if event.type == "deleted":
                return
    collector = asyncio.create_task(collect())
    await asyncio.sleep(0)
    await backend.create(build_spec(backend.settings, SESSION, "lifecycle"))
    await until_status(backend, "lifecycle", AgentStatus.READY)
    await backend.delete(SESSION, "lifecycle")
    await asyncio.wait_for(collector, 60)
    assert events[0][0] == "added"
    assert ("modified", "lifecycle", AgentStatus.READY) in {e[:3] for e in events}
    assert events[-1][0] == "deleted"
    # No event repeats the state before it: only visible changes are sent.
    assert all(a != b for a, b in itertools.pairwise(events))


async def test_several_proxy_replicas_agree(api, namespace):
    replicas = [K8sBackend(settings_for(namespace), client=Client(api)) for _ in range(2)]
    await asyncio.gather(*(r.start() for r in replicas))
    try:
        await replicas[0].create(build_spec(replicas[0].settings, SESSION, "shared"))
        await until_status(replicas[1], "shared", AgentStatus.READY)
        await until_status(replicas[0], "shared", AgentStatus.READY)
        views = [[(s.id, s.status, s.spec, s.upstream) for s in await r.list()] for r in replicas]
        assert views[0] == views[1]
        await replicas[1].delete(SESSION, "shared")
        await wait_for(lambda: _absent(replicas[0], "shared"), "the other replica to see the deletion")
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


async def test_an_invalid_rendered_object_is_rejected_with_the_servers_message(api, namespace, tmp_path):
    # An operator template the API server refuses: the message comes through
    # and nothing of the agent is left behind.
    source = (Path(__file__).resolve().parents[2] / "templates" / "statefulset.yaml.j2").read_text()
    (tmp_path / "statefulset.yaml.j2").write_text(source.replace("podManagementPolicy: Parallel",
                                                                 "podManagementPolicy: Sometimes"))
    settings = settings_for(namespace, f"templates_dir={tmp_path}")
    backend = K8sBackend(settings, client=Client(api))
    await backend.start()
    try:
        with pytest.raises(Rejected) as error:
            await backend.create(build_spec(settings, SESSION, "invalid"))
        assert "podManagementPolicy" in error.value.message
        for path in (f"/api/v1/namespaces/{namespace}/configmaps/agent-invalid-config",
                     f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/data-agent-invalid-0"):
            assert await _gone(api, path), path
    finally:
        await backend.close()
