"""The imitation of the API server's lists that the read-path benchmark measures: the real
client, cache and backend read its objects as ready agents with nothing drifted, so the
benchmark measures lists of ready agents and a start that writes nothing. And the benchmark
itself runs (a tiny run)."""

from __future__ import annotations

import asyncio
import gc
import json

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.drift import differences
from agentproxy.backends.k8s.plan import as_applied
from agentproxy.render import render_agent
from agentproxy.spec import build_spec
from benchmarks.synthetic import agent_objects, fields_v1, sessions, synthetic_namespace

from .._support import settings_with


def settings():
    return settings_with("k8s_mode.namespace=synthetic", "k8s_mode.pod_address=pod_ip")


def test_fields_v1_names_every_field_and_keys_named_list_items():
    assert fields_v1({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}],
                                                                  "args": ["x"]}}) == {
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {"f:containers": {'k:{"name":"c"}': {".": {}, "f:name": {}, "f:image": {}}}, "f:args": {}}}


def test_sessions_put_two_in_the_small_one_and_the_others_four_to_a_session():
    pairs = list(sessions(11, "small", 4))
    assert pairs[:2] == [("small", "small-0"), ("small", "small-1")]
    assert len(pairs) == 11 and len({a for _, a in pairs}) == 11
    assert [s for s, _ in pairs[2:]] == ["s0"] * 4 + ["s1"] * 4 + ["s2"]


def test_the_objects_hold_what_agentproxy_applies_and_what_the_server_adds():
    config = settings()
    objects = agent_objects(config, "s1", "a1", 100)
    sts = objects["StatefulSet"]
    for obj in render_agent(config, build_spec(config, "s1", "a1", "echo")):
        assert differences(objects[obj["kind"]], as_applied(obj, sts)) == [], obj["kind"]
    versions = [int(o["metadata"]["resourceVersion"]) for o in objects.values()]
    assert sorted(versions) == list(range(100, 105))
    assert all(o["metadata"]["uid"] for o in objects.values())
    assert objects["Pod"]["status"]["phase"] == "Running"
    assert objects["Service"]["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]
    assert "ownerReferences" not in objects["ConfigMap"]["metadata"]  # the claim is nobody's


async def test_a_backend_started_on_the_imitation_lists_ready_agents_and_writes_nothing():
    config = settings()
    api = synthetic_namespace(config, 6)
    backend = K8sBackend(config, client=Client(api, transport=api.transport))  # type: ignore[arg-type]  # the imitation of kr8s's Api
    await backend.start()
    try:
        agents = await backend.list()
        assert sorted(a.id for a in agents) == ["a0", "a1", "a2", "a3", "small-0", "small-1"]
        assert {a.status for a in agents} == {AgentStatus.READY}
        assert [a.id for a in await backend.list(session="small")] == ["small-0", "small-1"]
        for _ in range(500):  # the start's pass over every agent
            if not backend.reconciler.waiting:
                break
            await asyncio.sleep(0.01)
        assert backend.reconciler.waiting == 0 and backend.reconciler.compared == 6
        for agent_id in ("a0", "small-1"):  # nothing changed since: nothing rendered again
            await backend.reconciler.reconcile(agent_id)
        assert api.writes == [] and backend.reconciler.compared == 6
        stored = [o for r in backend.cache.reflectors.values() for o in r.store.values()] if backend.cache else []
        assert len(stored) == 30 and not any("managedFields" in o["metadata"] for o in stored)  # kept without
        assert sorted(set(api.lists)) == ["configmaps", "events?involvedObject.kind=PersistentVolumeClaim",
                                          "events?involvedObject.kind=StatefulSet", "persistentvolumeclaims",
                                          "pods", "services", "statefulsets"]
        assert json.loads(api.bodies["pods"])["metadata"]["resourceVersion"] == str(api.resource_version)
    finally:
        await backend.close()
        gc.unfreeze()


async def test_a_start_derives_and_reconciles_nothing_from_a_partial_view():
    """A restarted proxy lists its kinds one by one: with the claims listed and the StatefulSets
    not yet, every claim (long older than a create takes) would look abandoned. Nothing is
    derived, published or reconciled until every kind is listed; then nothing is removed."""
    config = settings()
    api = synthetic_namespace(config, 4)
    api.gates["statefulsets"] = asyncio.Event()
    backend = K8sBackend(config, client=Client(api, transport=api.transport))  # type: ignore[arg-type]  # the imitation of kr8s's Api
    first_event = asyncio.ensure_future(backend.events().__anext__())
    await asyncio.sleep(0)  # subscribed
    start = asyncio.ensure_future(backend.start())
    try:
        for _ in range(1000):  # the other kinds are listed while the StatefulSets' list is held
            if {"configmaps", "pods", "services", "persistentvolumeclaims"} <= set(api.lists) and \
                    len(backend.cache.reflectors["ConfigMap"].store) == 4 if backend.cache else False:
                break
            await asyncio.sleep(0.01)
        assert len(backend.cache.reflectors["ConfigMap"].store) == 4
        assert not gc.isenabled()  # the collector waits for the whole start (see agentproxy.heap)
        # A pass that comes due meanwhile (scheduled by anything) waits for a whole view.
        await backend.reconciler._run("a0", 0)
        assert api.writes == [] and "a0" in backend.reconciler._pending
        assert len(backend.index) == 0 and not backend.current()
        api.gates["statefulsets"].set()
        await asyncio.wait_for(start, 60)
        assert backend.current() and gc.isenabled() and gc.get_freeze_count() > 0
        assert {a.status for a in await backend.list()} == {AgentStatus.READY}
        first = await asyncio.wait_for(first_event, 5)
        assert first.type == "added" and first.agent.status is AgentStatus.READY  # no partial state was announced
        for agent_id in ("a0", "a1", "small-0", "small-1"):
            await backend.reconciler.reconcile(agent_id)
        assert api.writes == []
    finally:
        for task in (start, first_event):
            task.cancel()
        await asyncio.gather(start, first_event, return_exceptions=True)
        await backend.close()
        gc.unfreeze()
