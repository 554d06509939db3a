"""A create's start progress in k8s mode as the watches deliver it: one watch per kind, so
one kind's events may come before another's that happened earlier (a loaded machine, a
watch that just reconnected). Whatever the order, a first start shows one ``start`` record
that ends ``ready``; a pod that only stops being Ready for a while is no restart, one whose
container started again is. The events go through the real cache and the backend's own
handling (no API server: the reflectors are fed as a watch would feed them)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from agentproxy.backends.agent_state import AgentStatus
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.cache import NamespaceCache
from agentproxy.backends.k8s.kinds import CONFIGMAP, POD, PVC, SERVICE, STATEFULSET, Kind
from agentproxy.backends.progress import RESTART, START
from agentproxy.render import render_agent

from .._support import settings_with, spec_for

CREATED = "2026-01-02T03:04:05Z"


class Watches:
    """A k8s backend whose cache the test feeds, one watch event at a time."""

    def __init__(self) -> None:
        settings = settings_with("k8s_mode.namespace=ns1")
        self.spec = spec_for(settings)
        self.objects = render_agent(settings, self.spec)  # ConfigMap, Service, PVC, StatefulSet
        self.backend = K8sBackend(settings)
        self.backend.cache = NamespaceCache(None, "ns1", self.backend._on_change)  # type: ignore[arg-type]  # no API server
        self.timed: list[str] = []
        self.backend.progress.listeners.append(lambda record, step: self.timed.append(f"{record.kind} {step.name}"))
        self._version = 100

    async def event(self, kind: Kind, obj: dict[str, Any], event_type: str = "ADDED") -> None:
        """Deliver one watch event of ``kind`` (the object as the server keeps it)."""
        assert self.backend.cache is not None
        self._version += 1
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{kind.name}")
        stored["metadata"].setdefault("creationTimestamp", CREATED)
        stored["metadata"]["resourceVersion"] = str(self._version)
        await self.backend.cache.reflectors[kind.name]._handle({"type": event_type, "object": stored})

    def rendered(self, kind: Kind) -> dict[str, Any]:
        return next(o for o in self.objects if o["kind"] == kind.name)

    def pod(self, stage: str, *, restarts: int = 0, started: str = "2026-01-02T03:04:08Z") -> dict[str, Any]:
        """The agent's pod as kwok's stages leave it: ``created`` (by the StatefulSet
        controller), ``scheduled``, ``ready``, or ``unready`` (Ready lost, the container runs on)."""
        sts = self.rendered(STATEFULSET)
        pod: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "agent-a1-0", "namespace": "ns1", "uid": "uid-pod",
                         "labels": dict(sts["spec"]["template"]["metadata"]["labels"]),
                         "ownerReferences": [{"kind": "StatefulSet", "name": "agent-a1", "uid": "uid-StatefulSet",
                                              "controller": True}]},
            "spec": {}, "status": {"phase": "Pending"}}
        if stage == "created":
            return pod
        pod["spec"]["nodeName"] = "kwok-node-0"
        conditions = [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-02T03:04:06Z"}]
        pod["status"]["conditions"] = conditions
        if stage == "scheduled":
            return pod
        ready = "True" if stage == "ready" else "False"
        conditions += [{"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-02T03:04:07Z"},
                       {"type": "ContainersReady", "status": ready, "lastTransitionTime": "2026-01-02T03:04:09Z"},
                       {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-02T03:04:09Z"}]
        pod["status"].update(phase="Running", podIP="10.0.0.7", containerStatuses=[{
            "name": "agent", "image": "agent:1", "imageID": "agent@sha256:1", "ready": ready == "True",
            "restartCount": restarts, "state": {"running": {"startedAt": started}}}])
        return pod

    def bound(self) -> dict[str, Any]:
        pvc = copy.deepcopy(self.rendered(PVC))
        pvc.setdefault("spec", {})["volumeName"] = "pv-1"
        pvc["status"] = {"phase": "Bound"}
        return pvc

    async def create(self) -> None:
        """What a create does before its first object is written: its start begins."""
        self.backend.progress.begin(self.spec, START)

    def steps(self) -> list[str]:
        record = self.backend.progress.get("a1")
        assert record is not None
        return [s.name for s in record.steps]


@pytest.fixture
async def watches():
    w = Watches()
    yield w
    await w.backend.reconciler.close()


async def test_a_pod_seen_before_its_statefulset_is_no_stop_and_no_restart(watches):
    await watches.create()
    record = watches.backend.progress.get("a1")
    await watches.event(CONFIGMAP, watches.rendered(CONFIGMAP))
    await watches.event(SERVICE, watches.rendered(SERVICE))
    await watches.event(PVC, watches.rendered(PVC))
    await watches.event(PVC, watches.bound(), "MODIFIED")
    # The pods' watch is ahead of the StatefulSets': the pod reads as one shutting down.
    await watches.event(POD, watches.pod("created"))
    state = watches.backend.index.get("a1")
    assert state is not None and (state.status, state.reason) == (AgentStatus.STOPPING, "Terminating")
    await watches.event(POD, watches.pod("scheduled"), "MODIFIED")
    await watches.event(STATEFULSET, watches.rendered(STATEFULSET))
    await watches.event(POD, watches.pod("ready"), "MODIFIED")
    assert watches.backend.progress.get("a1") is record and record is not None and record.kind == START
    steps = watches.steps()
    assert steps[0] == "applied" and steps[-1] == "ready" and "stopped" not in steps
    assert set(steps) == {"applied", "scheduled", "volume_bound", "image_ready", "container_started",
                          "agentapi_answering", "ready"}
    assert "start container_started" in watches.timed and not any(t.startswith(RESTART) for t in watches.timed)


async def test_objects_seen_before_the_one_the_spec_is_read_from_are_no_delete(watches):
    await watches.create()
    record = watches.backend.progress.get("a1")
    # The Service's and the claim's watches are ahead of the ConfigMaps': no spec, no state yet.
    await watches.event(SERVICE, watches.rendered(SERVICE))
    await watches.event(PVC, watches.rendered(PVC))
    assert watches.backend.index.get("a1") is None
    assert watches.backend.progress.get("a1") is record and record is not None and not record.ended
    for kind in (CONFIGMAP, STATEFULSET):
        await watches.event(kind, watches.rendered(kind))
    await watches.event(PVC, watches.bound(), "MODIFIED")
    await watches.event(POD, watches.pod("created"))
    await watches.event(POD, watches.pod("ready"), "MODIFIED")
    assert watches.backend.progress.get("a1") is record and watches.steps()[-1] == "ready"
    assert "stopped" not in watches.steps()
    assert watches.timed.count("start container_started") == 1  # timed: the create was this proxy's


async def test_a_pod_that_stops_being_ready_restarts_only_when_its_container_does(watches):
    await watches.create()
    for kind in (CONFIGMAP, SERVICE, STATEFULSET):
        await watches.event(kind, watches.rendered(kind))
    await watches.event(PVC, watches.bound())
    await watches.event(POD, watches.pod("ready"))
    first = watches.backend.progress.get("a1")
    assert first is not None and first.ended and watches.steps()[-1] == "ready"
    # Its readiness probe timed out (a loaded node): the container runs on. No new start.
    await watches.event(POD, watches.pod("unready"), "MODIFIED")
    assert watches.backend.index.get("a1").status is AgentStatus.STARTING
    await watches.event(POD, watches.pod("ready"), "MODIFIED")
    assert watches.backend.progress.get("a1") is first
    # The container ended and the kubelet started it again: a restart.
    await watches.event(POD, watches.pod("unready", restarts=1, started="2026-01-02T03:09:00Z"), "MODIFIED")
    restart = watches.backend.progress.get("a1")
    assert restart is not first and restart is not None and restart.kind == RESTART
    await watches.event(POD, watches.pod("ready", restarts=1, started="2026-01-02T03:09:00Z"), "MODIFIED")
    assert restart.ended and restart.steps[-1].name == "ready"


async def test_a_delete_during_a_start_ends_it_once_the_agent_is_gone(watches):
    await watches.create()
    record = watches.backend.progress.get("a1")
    for kind in (CONFIGMAP, SERVICE, STATEFULSET):
        await watches.event(kind, watches.rendered(kind))
    await watches.event(POD, watches.pod("scheduled"))
    # A delete: the StatefulSet goes first (its pod shuts down), then the Service and the ConfigMap.
    await watches.event(STATEFULSET, watches.rendered(STATEFULSET), "DELETED")
    assert record is not None and not record.ended
    await watches.event(SERVICE, watches.rendered(SERVICE), "DELETED")
    await watches.event(CONFIGMAP, watches.rendered(CONFIGMAP), "DELETED")
    assert record.ended and (record.steps[-1].name, record.steps[-1].reason) == ("stopped", "Deleted")
    assert watches.backend.progress.get("a1") is None
