"""The k8s backend's index of agents kept current by watch events: each event derives again
the state of the agent it touches (and only that one), lists read the index, and an unchanged
agent keeps the very same state object. The events go through the real reflectors of a
namespace cache that never connects (no cluster: nothing here calls the API server)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentproxy import naming
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s import model
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.cache import NamespaceCache
from agentproxy.backends.k8s.kinds import CONFIGMAP, POD, STATEFULSET, Kind
from agentproxy.render import render_agent

from .._support import settings_with, spec_for

NOW = "2025-01-02T03:04:05Z"


@pytest.fixture
async def backend():
    backend = K8sBackend(settings_with("k8s_mode.namespace=ns1", "k8s_mode.pod_address=pod_ip"))
    backend.cache = NamespaceCache(None, "ns1", backend._on_change)  # type: ignore[arg-type]  # no API server
    try:
        yield backend
    finally:
        await backend.reconciler.close()  # the passes the events scheduled


class Feed:
    """Watch events into the backend's reflectors, with the metadata the API server adds."""

    def __init__(self, backend: K8sBackend) -> None:
        self.backend = backend
        self.version = 0

    async def __call__(self, event: str, kind: Kind, obj: dict[str, Any]) -> None:
        self.version += 1
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("creationTimestamp", NOW)
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta["resourceVersion"] = str(self.version)
        reflector = self.backend.cache.reflectors[kind.name]
        await reflector._handle({"type": event, "object": obj})


def objects(settings, agent_id: str, session: str) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_agent(settings, spec_for(settings, agent_id, session))}


def ready_pod(agent_id: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": naming.pod_name(agent_id), "labels": {naming.LABEL_AGENT_ID: agent_id}},
            "spec": {"nodeName": "node-1"},
            "status": {"phase": "Running", "podIP": "10.0.0.7",
                       "conditions": [{"type": "PodScheduled", "status": "True"},
                                      {"type": "Ready", "status": "True", "lastTransitionTime": NOW}]}}


async def assert_index_is_fresh(backend: K8sBackend) -> None:
    """What the index holds is what deriving every agent from the cache gives now."""
    assert backend.cache is not None
    fresh = [s for s in (backend.state_of(a) for a in backend.cache.agent_ids()) if s is not None]
    assert sorted(await backend.list(), key=lambda s: s.id) == sorted(fresh, key=lambda s: s.id)


async def test_events_add_modify_and_delete_the_agents_they_touch(backend):
    feed, settings = Feed(backend), backend.settings
    a1, b1 = objects(settings, "a1", "s1"), objects(settings, "b1", "s2")
    await feed("ADDED", CONFIGMAP, a1["ConfigMap"])  # the claim
    [state] = await backend.list(session="s1")
    assert (state.id, state.status, state.reason) == ("a1", AgentStatus.PENDING, "NotApplied")
    await feed("ADDED", STATEFULSET, a1["StatefulSet"])
    assert (await backend.get("s1", "a1")).reason == "PodNotCreated"
    await feed("ADDED", CONFIGMAP, b1["ConfigMap"])
    await feed("ADDED", STATEFULSET, b1["StatefulSet"])
    await feed("ADDED", POD, ready_pod("a1"))
    ready = await backend.get("s1", "a1")
    assert ready.status is AgentStatus.READY and ready.upstream == "http://10.0.0.7:3284"
    assert [s.id for s in await backend.list(session="s2")] == ["b1"]
    assert [s.id for s in await backend.list(status=AgentStatus.READY)] == ["a1"]
    await assert_index_is_fresh(backend)

    b1_state = await backend.get("s2", "b1")
    await feed("MODIFIED", POD, ready_pod("a1"))  # another version, nothing the agent shows changed
    assert await backend.get("s1", "a1") is ready  # the same object: readers' caches stay valid
    assert await backend.get("s2", "b1") is b1_state  # an event of a1 leaves b1 alone

    for kind in (POD, STATEFULSET, CONFIGMAP):
        await feed("DELETED", kind, ready_pod("a1") if kind is POD else a1[kind.name])
    assert await backend.list(session="s1") == []
    assert [s.id for s in await backend.list()] == ["b1"]
    await assert_index_is_fresh(backend)


async def test_an_object_relabelled_out_of_band_updates_the_agent_it_is_named_for(backend):
    feed, settings = Feed(backend), backend.settings
    a1 = objects(settings, "a1", "s1")
    await feed("ADDED", CONFIGMAP, a1["ConfigMap"])
    await feed("ADDED", STATEFULSET, a1["StatefulSet"])
    await feed("ADDED", POD, ready_pod("a1"))
    assert (await backend.get("s1", "a1")).status is AgentStatus.READY
    pod = ready_pod("a1")
    pod["metadata"]["labels"][naming.LABEL_AGENT_ID] = "zz"
    pod["status"]["conditions"][1]["status"] = "False"
    await feed("MODIFIED", POD, pod)  # the event is filed under "zz"; the pod is a1's by name
    assert (await backend.get("s1", "a1")).status is AgentStatus.STARTING
    await assert_index_is_fresh(backend)


def test_the_agent_an_object_is_named_for():
    for kind_key, kind in (("configmap", CONFIGMAP), ("statefulset", STATEFULSET), ("pod", POD)):
        assert model.agent_named(kind, naming.object_names("a-b-1")[kind_key]) == "a-b-1"
    assert model.agent_named(CONFIGMAP, "agent-a1-other") is None
    assert model.agent_named(POD, "unrelated") is None
    assert model.agent_named(STATEFULSET, "agent-") is None
