"""The k8s backend's decisions without a cluster: the kind table, the apply plan and owner,
delete targets, an agent's state from cached objects, drift and strays, the reconciler's
pass over its narrow interface, the cache's index by agent, and the CLI's progress and diff."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from agentproxy import naming
from agentproxy.backends.base import AgentStatus, Conflict
from agentproxy.backends.k8s import model, plan, reconcile
from agentproxy.backends.k8s.cache import Reflector
from agentproxy.backends.k8s.kinds import (
    CONFIGMAP,
    KINDS,
    MANAGED,
    POD,
    PVC,
    ROLE,
    SERVICE,
    STATEFULSET,
    kind_of,
    path_of,
)
from agentproxy.backends.k8s.reconcile import Reconciler
from agentproxy.render import render_agent, render_rbac

from .._support import settings_with, spec_for
from .support import BOUND, READY_POD, stored


def rendered(**kwargs: Any) -> tuple[Any, list[dict[str, Any]]]:
    settings = settings_with("k8s_mode.namespace=ns1")
    spec = spec_for(settings, **kwargs)
    return spec, render_agent(settings, spec)


def test_one_kind_table_gives_every_path():
    settings = settings_with("k8s_mode.namespace=ns1")
    objects = render_agent(settings, spec_for(settings)) + render_rbac(settings)
    assert [path_of(o) for o in objects] == [
        "/api/v1/namespaces/ns1/configmaps/agent-a1-config",
        "/api/v1/namespaces/ns1/services/agent-a1-headless",
        "/api/v1/namespaces/ns1/persistentvolumeclaims/data-agent-a1-0",
        "/apis/apps/v1/namespaces/ns1/statefulsets/agent-a1",
        "/api/v1/namespaces/ns1/serviceaccounts/agentproxy",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/roles/agentproxy",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns1/rolebindings/agentproxy",
    ]
    assert kind_of(objects[3]) is STATEFULSET and kind_of(objects[5]) is ROLE
    assert set(KINDS) < set(MANAGED) and POD in KINDS
    with pytest.raises(ValueError, match="does not manage Deployment"):
        kind_of({"apiVersion": "apps/v1", "kind": "Deployment"})


NOTHING = model.AgentObjects(None, None, None, None)


def test_a_create_claims_with_the_configmap_then_applies_the_owner_first():
    _, objects = rendered()
    create = plan.plan(objects, NOTHING, plan.Purpose.CREATE)
    assert create.claim is objects[0] and create.owner is None
    # The claim is created as rendered: a create does not write the ConfigMap again.
    assert [(s.kind, s.owned, s.force) for s in create.steps] == [("StatefulSet", False, None), ("Service", True, None)]
    again = plan.plan(objects, NOTHING, plan.Purpose.REAPPLY)
    assert again.claim is None
    assert [(s.kind, s.owned, s.force) for s in again.steps] == [
        ("PersistentVolumeClaim", False, None), ("StatefulSet", False, None), ("Service", True, None),
        ("ConfigMap", False, None)]  # None: as k8s_mode.force_conflicts says


def test_a_create_leaves_the_pvc_to_the_statefulset_controller_when_it_makes_it_as_rendered():
    _, objects = rendered()
    _, _, pvc, sts = objects
    made = plan.claim_from_template(sts, pvc["metadata"]["name"])
    assert made is not None and made["metadata"]["labels"] == pvc["metadata"]["labels"]
    assert made["spec"] == pvc["spec"]
    assert plan.claim_from_template(sts, "data-agent-a1-x") is None
    assert plan.claim_from_template(sts, "other-agent-a1-0") is None
    create = plan.plan(objects, NOTHING, plan.Purpose.CREATE)
    assert create.kinds == ["StatefulSet", "Service"]  # with the claim: 3 requests

    # Data kept from an earlier agent of this id: left alone when it holds what would be applied,
    # applied (forced: the controller made it) when it does not (a larger size asked for now).
    kept = {**copy.deepcopy(pvc), "status": {"phase": "Bound"}}
    with_data = model.AgentObjects(None, None, None, kept)
    assert plan.plan(objects, with_data, plan.Purpose.CREATE).kinds == ["StatefulSet", "Service"]
    kept["spec"]["resources"]["requests"]["storage"] = "512Mi"
    first = plan.plan(objects, with_data, plan.Purpose.CREATE).steps[0]
    assert (first.kind, first.force, first.owned) == ("PersistentVolumeClaim", True, False)

    # A PVC template that asks for more than the claim template gives is applied, as rendered.
    for change in ({"annotations": {"backup": "daily"}}, {"labels": {**pvc["metadata"]["labels"], "tier": "x"}},
                   {"finalizers": ["example.com/keep"]}):
        custom = copy.deepcopy(pvc)
        custom["metadata"].update(change)
        steps = plan.plan([objects[0], objects[1], custom, sts], NOTHING, plan.Purpose.CREATE).steps
        assert steps[0].obj is custom and steps[0].force is True
    other_class = copy.deepcopy(pvc)
    other_class["spec"]["storageClassName"] = "fast"
    with_pvc = plan.plan([objects[0], objects[1], other_class, sts], NOTHING, plan.Purpose.CREATE)
    assert with_pvc.kinds == ["PersistentVolumeClaim", "StatefulSet", "Service"]


def test_owned_objects_point_at_the_stored_statefulset():
    _, objects = rendered()
    sts = stored(objects[3], uid="u-42")
    assert model.owner_reference(sts) == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "agent-a1",
                                          "uid": "u-42"}
    service = plan.as_applied(objects[1], sts)
    assert service["metadata"]["ownerReferences"] == [model.owner_reference(sts)]
    assert "ownerReferences" not in objects[1]["metadata"]  # a copy
    assert "ownerReferences" not in plan.as_applied(objects[2], sts)["metadata"]  # the PVC is not owned
    assert "ownerReferences" not in plan.as_applied(objects[0], sts)["metadata"]  # nor the ConfigMap
    assert "ownerReferences" not in plan.as_applied(objects[1], None)["metadata"]  # no owner yet


def test_a_suspend_applies_the_statefulset_alone_forced_unless_it_changed():
    _, objects = rendered()
    live = {**stored(objects[3]), "metadata": {**stored(objects[3])["metadata"], "resourceVersion": "41"}}
    scale = plan.plan(objects, model.AgentObjects(None, live, None, None), plan.Purpose.SCALE)
    [step] = scale.steps
    assert (step.kind, step.force, step.owned) == ("StatefulSet", True, False)
    assert step.obj["metadata"]["resourceVersion"] == "41" and "resourceVersion" not in objects[3]["metadata"]
    with pytest.raises(ValueError):
        plan.plan(objects, NOTHING, plan.Purpose.SCALE)


def test_a_repair_applies_only_what_drifted_forced_and_not_what_is_being_deleted():
    _, objects = rendered()
    sts = stored(objects[3])
    whole = model.AgentObjects(stored(plan.as_applied(objects[0], sts)), sts, None, stored(objects[2]),
                               service=stored(plan.as_applied(objects[1], sts)))
    assert plan.plan(objects, whole, plan.Purpose.REPAIR).steps == ()
    scaled = {**sts, "metadata": {**sts["metadata"], "resourceVersion": "77"}, "spec": {**sts["spec"], "replicas": 0}}
    no_service = dataclasses.replace(whole, statefulset=scaled, service=None)
    repair = plan.plan(objects, no_service, plan.Purpose.REPAIR)
    assert [(s.kind, s.force, s.drift) for s in repair.steps] == [
        ("StatefulSet", True, ("spec.replicas",)), ("Service", True, ("(missing)",))]
    assert [s.drifted for s in repair.steps] == ["changed out of band: spec.replicas", "deleted out of band"]
    assert repair.owner is scaled
    # What drifted is applied at the version compared (two replicas: one repair, one 409); what
    # is missing has no version to hold it to.
    assert repair.steps[0].obj["metadata"]["resourceVersion"] == "77"
    assert repair.steps[0].applied(scaled)["metadata"]["resourceVersion"] == "77"
    assert "resourceVersion" not in repair.steps[1].obj["metadata"]
    assert "resourceVersion" not in objects[3]["metadata"]  # the render is left as it was
    service = whole.service
    assert service is not None
    deleting = {**service, "metadata": {**service["metadata"], "deletionTimestamp": "2026-01-02T03:04:05Z",
                                        "ownerReferences": []}}
    assert plan.plan(objects, dataclasses.replace(whole, service=deleting), plan.Purpose.REPAIR).steps == ()


async def test_a_plan_is_carried_out_in_order_with_the_stored_statefulset_as_owner():
    _, objects = rendered()
    pristine = copy.deepcopy(objects)
    applied: list[tuple[dict[str, Any], bool | None]] = []

    async def apply(obj: dict[str, Any], *, force: bool | None = None) -> dict[str, Any]:
        applied.append((obj, force))
        if obj["kind"] == "Service":
            raise Conflict("taken")
        return stored(obj, uid="u-7")

    create = plan.plan(objects, NOTHING, plan.Purpose.CREATE)
    with pytest.raises(Conflict):
        await plan.carry_out(create, apply)  # a failure ends a create
    assert [(o["kind"], force) for o, force in applied] == [("StatefulSet", None), ("Service", None)]
    assert applied[1][0]["metadata"]["ownerReferences"][0]["uid"] == "u-7"  # as the server stored it

    applied.clear()
    failed: list[str] = []
    again = plan.plan(objects, NOTHING, plan.Purpose.REAPPLY)
    done = await plan.carry_out(again, apply, on_failure=lambda step, exc: failed.append(step.kind))
    assert failed == ["Service"]  # told, and the other steps go on
    assert [step.kind for step, _ in done] == ["PersistentVolumeClaim", "StatefulSet", "ConfigMap"]
    assert "ownerReferences" not in done[2][1]["metadata"]  # the ConfigMap is nobody's
    assert objects == pristine  # rendered objects are shared (cached): never changed


def test_delete_removes_the_statefulset_first_and_the_data_only_when_purged():
    assert model.delete_targets("a1", purge=False) == [
        (STATEFULSET, "agent-a1"), (SERVICE, "agent-a1-headless"), (CONFIGMAP, "agent-a1-config")]
    assert model.delete_targets("a1", purge=True)[-1] == (PVC, "data-agent-a1-0")


def test_the_spec_comes_from_the_claim_then_the_statefulset():
    spec, objects = rendered(message="hi")
    reader = model.SpecReader()
    claim, sts = objects[0], objects[3]
    assert reader.spec(model.AgentObjects(claim, None, None, None)) == spec
    assert reader.spec(model.AgentObjects(None, sts, None, None)) == spec
    broken = {"metadata": {"annotations": {model.SPEC_ANNOTATION: "{not json"}}}
    assert reader.spec(model.AgentObjects(broken, sts, None, None)) == spec
    assert reader.spec(model.AgentObjects(broken, None, None, None)) is None
    text = claim["metadata"]["annotations"][model.SPEC_ANNOTATION]
    assert reader.parse(text) is reader.parse(text)  # parsed once


def test_an_agent_state_from_its_objects():
    spec, objects = rendered()
    claim, sts = stored(objects[0]), stored(objects[3], created="2026-01-02T03:04:09Z")
    state = model.agent_state(spec, model.AgentObjects(claim, None, None, None), namespace="ns1", pod_address="dns")
    assert (state.status, state.reason) == (AgentStatus.PENDING, "NotApplied")
    assert state.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # the claim's

    ready = model.AgentObjects(claim, sts, READY_POD, BOUND)
    by_dns = model.agent_state(spec, ready, namespace="ns1", pod_address="dns")
    assert by_dns.status is AgentStatus.READY and by_dns.reason is None
    assert by_dns.upstream == "http://agent-a1-0.agent-a1-headless.ns1.svc:3284"
    assert by_dns.details == {"namespace": "ns1", **naming.object_names("a1"), "pod_ip": "10.0.0.7",
                              "node": "node-1", "start": "cold"}
    by_ip = model.agent_state(spec, ready, namespace="ns1", pod_address="pod_ip", first_message_overdue="late")
    assert by_ip.upstream == "http://10.0.0.7:3284"
    assert (by_ip.reason, by_ip.message) == ("FirstMessagePending", "late")
    pending = model.agent_state(spec, model.AgentObjects(claim, sts, None, BOUND), namespace="ns1",
                                pod_address="pod_ip", first_message_overdue="late")
    assert pending.reason == "PodNotCreated" and pending.upstream is None  # overdue only once ready


def test_what_create_and_delete_answer():
    spec, _ = rendered()
    when = datetime(2026, 1, 1, tzinfo=UTC)
    applied = model.applied_state(spec, "ns1", when)
    assert (applied.status, applied.reason, applied.created_at) == (AgentStatus.PENDING, "Applied", when)
    assert model.deleting_state(applied, purge=True).message == "purging data too"
    assert model.deleting_state(applied, purge=False).status is AgentStatus.STOPPING


def test_drift_and_strays():
    _, objects = rendered(env={"MODE": "calm"})
    sts = stored(objects[3])
    want = plan.as_applied(objects[0], sts)
    live = stored(want)
    live["metadata"]["managedFields"] = [{"manager": "agentproxy"}]
    assert not model.drifted(live, want)
    assert model.drifted(None, want)
    assert model.drifted({**live, "data": {**live["data"], "MODE": "tampered"}}, want)
    assert "ownerReferences" not in want["metadata"]  # a ConfigMap is not owned
    service = plan.as_applied(objects[1], sts)
    assert service["metadata"]["ownerReferences"] == [model.owner_reference(sts)]
    assert model.drifted({**stored(service), "metadata": {**stored(service)["metadata"], "ownerReferences": []}},
                         service)

    labels = naming.standard_labels("a1", "s1")
    extra = {"metadata": {"name": "agent-a1-old-extra", "labels": labels}}
    other = {"metadata": {"name": "agent-b1-config", "labels": naming.standard_labels("b1", "s1")}}
    assert model.strays("a1", CONFIGMAP, [objects[0], extra, other], orphaned=False) == ["agent-a1-old-extra"]
    assert model.strays("a1", CONFIGMAP, [objects[0], extra], orphaned=True) == ["agent-a1-config",
                                                                                  "agent-a1-old-extra"]


def test_progress_and_diff_for_the_command_line():
    spec, objects = rendered()
    state = model.agent_state(spec, model.AgentObjects(stored(objects[0]), stored(objects[3]), READY_POD, BOUND),
                              namespace="ns1", pod_address="dns")
    assert model.progress(state, READY_POD, BOUND) == ["applied", "scheduled", "volume bound", "ready"]
    assert model.progress(state, None, None)[:1] == ["applied"]

    live = {**stored(objects[0]), "status": {}}
    merged = {**stored(objects[0], uid="other"), "metadata": {**stored(objects[0])["metadata"],
                                                               "resourceVersion": "9"}}
    assert model.object_diff(live, merged) == []  # only server-kept metadata differs
    changed = {**merged, "data": {**merged["data"], "EXTRA": "1"}}
    lines = model.object_diff(live, changed)
    assert lines[:2] == ["--- live/ConfigMap/agent-a1-config\n", "+++ merged/ConfigMap/agent-a1-config\n"]
    assert "+  EXTRA: '1'\n" in lines
    assert model.object_diff(None, merged)[2].startswith("@@ -0,0")


class Host:
    """The reconciler's view of a backend (:class:`~agentproxy.backends.k8s.reconcile.ReconcileHost`),
    held in dicts: what it decides is under test here, the real one runs in the e2e suite."""

    def __init__(self, spec: Any, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.spec, self.objects = spec, objects
        self.applied: list[dict[str, Any]] = []
        self.forced: list[bool | None] = []
        self.deleted: list[tuple[str, str]] = []
        self.seen: list[str | None] = []
        """The version each delete was conditioned on."""
        settings = settings_with("k8s_mode.namespace=ns1")
        self._render = lambda spec: render_agent(settings, spec)

    def spec_of(self, agent_id: str) -> Any:
        return self.spec

    def render(self, spec: Any) -> list[dict[str, Any]]:
        return self._render(spec)

    def busy(self, agent_id: str) -> bool:
        return False

    def current(self) -> bool:
        return True

    def cached(self, kind: Any, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind.name, name))

    def cached_of_agent(self, kind: Any, agent_id: str) -> list[dict[str, Any]]:
        return [o for (k, _), o in self.objects.items() if k == kind.name and model.agent_id_of(o) == agent_id]

    async def apply(self, obj: dict[str, Any], *, force: bool | None = None) -> dict[str, Any]:
        self.applied.append(obj)
        self.forced.append(force)
        return stored(obj)  # as the server answers an apply

    async def delete_object(self, kind: Any, name: str, *, seen: str | None = None) -> bool:
        self.deleted.append((kind.name, name))
        self.seen.append(seen)
        return True

    async def exists(self, kind: Any, name: str) -> bool:
        return (kind.name, name) in self.objects or (kind.name, name) in self.server_only

    server_only: frozenset[tuple[str, str]] = frozenset()
    """Objects the server holds that the cache does not show yet."""


async def test_a_reconcile_pass_reapplies_drift_and_prunes_strays():
    spec, objects = rendered()
    sts = stored(objects[3])
    configmap = stored(plan.as_applied(objects[0], sts))
    stray = {"metadata": {"name": "agent-a1-old", "labels": naming.standard_labels("a1", "s1")}}
    host = Host(spec, {("StatefulSet", "agent-a1"): sts, ("ConfigMap", "agent-a1-config"): configmap,
                       ("ConfigMap", "agent-a1-old"): stray, ("PersistentVolumeClaim", "data-agent-a1-0"): stored(objects[2])})
    reconciler = Reconciler(host)
    await reconciler.reconcile("a1")
    assert host.deleted == [("ConfigMap", "agent-a1-old")]
    assert [(o["kind"], o["metadata"]["ownerReferences"][0]["uid"]) for o in host.applied] == [("Service", "uid-1")]
    assert (reconciler.pruned, reconciler.reapplied, dict(reconciler.repairs)) == (1, 1, {"Service": 1})

    # Every kind: a scaled-down StatefulSet and a relabelled PVC are applied again, with force.
    host.applied.clear()
    host.forced.clear()
    host.objects[("StatefulSet", "agent-a1")] = {**sts, "spec": {**sts["spec"], "replicas": 0}}
    host.objects[("Service", "agent-a1-headless")] = stored(plan.as_applied(objects[1], sts))
    host.objects[("PersistentVolumeClaim", "data-agent-a1-0")]["metadata"]["labels"] = {}
    await reconciler.reconcile("a1")
    assert [o["kind"] for o in host.applied] == ["PersistentVolumeClaim", "StatefulSet"]
    assert host.applied[1]["spec"]["replicas"] == 1 and host.forced == [True, True]

    orphan = Host(None, {("ConfigMap", "agent-a1-config"): configmap})  # no spec, no StatefulSet
    await Reconciler(orphan).reconcile("a1")
    assert orphan.deleted == [("ConfigMap", "agent-a1-config")] and orphan.applied == []


async def test_a_missing_pvc_is_the_controllers_to_make_when_its_claim_template_makes_it_as_rendered():
    spec, objects = rendered()
    sts = stored(copy.deepcopy(objects[3]))
    whole = {("StatefulSet", "agent-a1"): sts, ("ConfigMap", "agent-a1-config"): stored(plan.as_applied(objects[0], sts)),
             ("Service", "agent-a1-headless"): stored(plan.as_applied(objects[1], sts)),
             ("Pod", "agent-a1-0"): {"metadata": {"name": "agent-a1-0"}}}  # its event came before the claim's
    host = Host(spec, dict(whole))
    await Reconciler(host).reconcile("a1")
    assert host.applied == []
    # The stored StatefulSet's claim template carries the server's defaults; the rendered one is compared.
    sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"] = "Filesystem"
    sts["spec"]["volumeClaimTemplates"][0]["status"] = {"phase": "Pending"}
    assert plan.pvc_awaited(model.AgentObjects.of("a1", host.cached), objects[2], objects[3])
    await Reconciler(host).reconcile("a1")
    assert host.applied == []

    # A PVC template that renders more than the claim template gives: applied, as before.
    custom = copy.deepcopy(objects[2])
    custom["metadata"]["annotations"] = {"backup": "daily"}
    assert not plan.pvc_awaited(model.AgentObjects.of("a1", host.cached), custom, objects[3])
    assert not plan.pvc_awaited(model.AgentObjects(None, None, None, None), objects[2], objects[3])


async def test_the_cache_indexes_objects_by_agent():
    reflector = Reflector(client=None, kind=CONFIGMAP, namespace="ns1", listener=lambda *args: None)  # type: ignore[arg-type]  # no API server

    def event(kind: str, name: str, agent: str) -> dict[str, Any]:
        return {"type": kind, "object": {"metadata": {"name": name, "resourceVersion": "1",
                                                      "labels": {naming.LABEL_AGENT_ID: agent}}}}
    await reflector._handle(event("ADDED", "agent-a1-config", "a1"))
    await reflector._handle(event("ADDED", "agent-b1-config", "b1"))
    await reflector._handle(event("ADDED", "agent-a1-extra", "a1"))
    assert sorted(o["metadata"]["name"] for o in reflector.of_agent("a1")) == ["agent-a1-config", "agent-a1-extra"]
    await reflector._handle(event("MODIFIED", "agent-a1-extra", "b1"))  # relabelled
    await reflector._handle(event("DELETED", "agent-b1-config", "b1"))
    assert [o["metadata"]["name"] for o in reflector.of_agent("a1")] == ["agent-a1-config"]
    assert [o["metadata"]["name"] for o in reflector.of_agent("b1")] == ["agent-a1-extra"]
    await reflector._handle(event("DELETED", "agent-a1-extra", "b1"))
    assert "b1" not in reflector.by_agent and reflector.of_agent("b1") == []
    await reflector._handle({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}})
    assert reflector.events == 6 and reflector.resource_version == "9"  # changes counted, bookmarks not


async def test_the_cache_keeps_of_a_pod_only_the_spec_it_reads_and_all_of_what_it_applies():
    pods = Reflector(client=None, kind=POD, namespace="ns1", listener=lambda *args: None)  # type: ignore[arg-type]  # no API server
    sets = Reflector(client=None, kind=STATEFULSET, namespace="ns1", listener=lambda *args: None)  # type: ignore[arg-type]
    spec, objects = rendered()
    template = objects[3]["spec"]["template"]
    pod = {"metadata": {"name": "agent-a1-0", "resourceVersion": "2", "labels": {naming.LABEL_AGENT_ID: "a1"},
                        "managedFields": [{"manager": "kube-controller-manager"}]},
           "spec": {**copy.deepcopy(template["spec"]), "nodeName": "kwok-node"}, "status": copy.deepcopy(READY_POD["status"])}
    await pods._handle({"type": "ADDED", "object": pod})
    await sets._handle({"type": "ADDED", "object": stored(objects[3])})
    kept = pods.of_agent("a1")[0]
    assert kept["spec"] == {"nodeName": "kwok-node"} and kept["status"] == pod["status"]
    assert "managedFields" not in kept["metadata"] and kept["kind"] == "Pod"
    assert sets.of_agent("a1")[0]["spec"] == objects[3]["spec"]  # compared for drift: whole
    state = model.agent_state(spec, model.AgentObjects(stored(objects[0]), sets.of_agent("a1")[0], kept, BOUND),
                              namespace="ns1", pod_address="pod_ip")
    assert state.status is AgentStatus.READY and state.details["node"] == "kwok-node"
    assert state.upstream == "http://10.0.0.7:3284"


async def test_a_young_agent_is_left_to_the_create_that_applies_it():
    spec, objects = rendered()
    sts = stored(objects[3], created="2026-01-02T03:04:05Z")
    host = Host(spec, {("StatefulSet", "agent-a1"): sts})  # its Service and claim not applied yet
    reconciler = Reconciler(host, now=lambda: datetime(2026, 1, 2, 3, 4, 7, tzinfo=UTC))
    await reconciler.reconcile("a1")
    assert host.applied == [] and "a1" in reconciler._pending  # looked at again later
    await reconciler.close()
    reconciler = Reconciler(host, now=lambda: datetime(2026, 1, 2, 3, 5, tzinfo=UTC))
    await reconciler.reconcile("a1")
    # (the PVC is the StatefulSet controller's to make, before the pod)
    assert [o["kind"] for o in host.applied] == ["Service", "ConfigMap"]


def _versioned(obj: dict[str, Any], version: str) -> dict[str, Any]:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": version}}


def _whole_agent() -> tuple[Any, dict[tuple[str, str], dict[str, Any]], list[dict[str, Any]]]:
    """An agent's four objects as applied, nothing drifted, each at a resourceVersion."""
    spec, objects = rendered()
    sts = _versioned(stored(objects[3]), "10")
    return spec, {("StatefulSet", "agent-a1"): sts,
                  ("ConfigMap", "agent-a1-config"): _versioned(stored(plan.as_applied(objects[0], sts)), "11"),
                  ("Service", "agent-a1-headless"): _versioned(stored(plan.as_applied(objects[1], sts)), "12"),
                  ("PersistentVolumeClaim", "data-agent-a1-0"): _versioned(stored(objects[2]), "13")}, objects


class ChangedMeanwhile(Host):
    """A server on which every object changed since the host's view: an apply at the version
    viewed is refused, as the API server refuses it."""

    async def apply(self, obj: dict[str, Any], *, force: bool | None = None) -> dict[str, Any]:
        if obj["metadata"].get("resourceVersion"):
            self.applied.append(obj)
            raise Conflict("the object has been modified; please apply your changes to the latest version")
        return await super().apply(obj, force=force)


async def test_a_repair_of_an_object_changed_since_it_was_compared_is_refused_counted_not_and_looked_at_again():
    spec, objects, _ = _whole_agent()
    service = objects[("Service", "agent-a1-headless")]
    objects[("Service", "agent-a1-headless")] = {**service, "metadata": {**service["metadata"], "labels": {}}}
    host = ChangedMeanwhile(spec, objects)
    reconciler = Reconciler(host, delay=0.01)
    await reconciler.reconcile("a1")
    [refused] = host.applied
    assert refused["kind"] == "Service" and refused["metadata"]["resourceVersion"] == "12"
    assert reconciler.reapplied == 0  # another replica repaired it: counted there, once
    assert "a1" in reconciler._pending  # the next pass compares the new version
    await reconciler.close()


class Finished(Host):
    """A server on which the claim was written again since the host's view (the create that
    made it finished): a delete conditioned on the viewed version is refused."""

    async def delete_object(self, kind: Any, name: str, *, seen: str | None = None) -> bool:
        await super().delete_object(kind, name, seen=seen)
        raise Conflict("Precondition failed: the resourceVersion in the precondition does not match")


async def test_an_abandoned_claim_is_removed_only_at_the_version_that_looked_abandoned():
    spec, objects = rendered()
    claim = _versioned(stored(objects[0], created="2026-01-02T03:04:05Z"), "31")
    later = lambda: datetime(2026, 1, 2, 4, 0, tzinfo=UTC)  # noqa: E731 - an hour after it was made
    host = Host(spec, {("ConfigMap", "agent-a1-config"): claim})
    reconciler = Reconciler(host, now=later)
    await reconciler.reconcile("a1")
    assert host.deleted == [("ConfigMap", "agent-a1-config")] and host.seen == ["31"]
    assert reconciler.abandoned == 1

    finished = Finished(spec, {("ConfigMap", "agent-a1-config"): claim})
    reconciler = Reconciler(finished, now=later, delay=0.01)
    await reconciler.reconcile("a1")
    assert finished.seen == ["31"] and reconciler.abandoned == 0
    assert "a1" in reconciler._pending  # looked at again, with the claim as it is now
    await reconciler.close()


async def test_a_claim_whose_statefulset_the_cache_does_not_show_yet_is_kept():
    """A create does not write its claim again: that it finished, while the cache still shows a
    claim without a StatefulSet, is read from the server before the claim is removed."""
    spec, objects = rendered()
    claim = _versioned(stored(objects[0], created="2026-01-02T03:04:05Z"), "31")
    later = lambda: datetime(2026, 1, 2, 4, 0, tzinfo=UTC)  # noqa: E731 - an hour after it was made
    host = Host(spec, {("ConfigMap", "agent-a1-config"): claim})
    host.server_only = frozenset({("StatefulSet", "agent-a1")})
    reconciler = Reconciler(host, now=later, delay=0.01)
    await reconciler.reconcile("a1")
    assert host.deleted == [] and reconciler.abandoned == 0
    assert "a1" in reconciler._pending  # looked at again once the cache shows it
    await reconciler.close()


async def test_a_pass_renders_nothing_again_while_the_spec_and_objects_are_those_of_a_clean_pass():
    spec, objects, rendered_objects = _whole_agent()
    host = Host(spec, objects)
    renders = []
    render = host._render

    def counted(spec: Any) -> list[dict[str, Any]]:
        renders.append(spec)
        return render(spec)
    host._render = counted
    reconciler = Reconciler(host)
    await reconciler.reconcile("a1")
    await reconciler.reconcile("a1")
    assert (len(renders), reconciler.compared, host.applied) == (1, 1, [])

    # Drift: the Service changed out of band, at a new resourceVersion: rendered, compared, repaired.
    service = host.objects[("Service", "agent-a1-headless")]
    host.objects[("Service", "agent-a1-headless")] = _versioned({**service, "spec": {**service["spec"], "ports": []}},
                                                                "20")
    await reconciler.reconcile("a1")
    assert [o["kind"] for o in host.applied] == ["Service"] and reconciler.compared == 2
    # The repair's own write comes back at a newer version: compared once more, then clean again.
    host.objects[("Service", "agent-a1-headless")] = service | {"metadata": {**service["metadata"],
                                                                             "resourceVersion": "21"}}
    await reconciler.reconcile("a1")
    await reconciler.reconcile("a1")
    assert reconciler.compared == 3 and len(host.applied) == 1

    # An object deleted out of band, another spec: each compared again.
    del host.objects[("ConfigMap", "agent-a1-config")]
    await reconciler.reconcile("a1")
    assert [o["kind"] for o in host.applied] == ["Service", "ConfigMap"] and reconciler.compared == 4
    host.objects[("ConfigMap", "agent-a1-config")] = _versioned(
        stored(plan.as_applied(rendered_objects[0], objects[("StatefulSet", "agent-a1")])), "30")
    await reconciler.reconcile("a1")
    host.spec = dataclasses.replace(spec, message="another")
    await reconciler.reconcile("a1")
    assert reconciler.compared == 6

    # A forgotten agent (deleted here) keeps no memory of its clean pass.
    reconciler.forget("a1")
    host.spec = spec
    await reconciler.reconcile("a1")
    assert reconciler.compared == 7


async def test_status_writes_leave_a_clean_pass_clean_and_any_change_a_repair_reads_does_not():
    spec, objects, _ = _whole_agent()
    host = Host(spec, objects)
    reconciler = Reconciler(host)
    await reconciler.reconcile("a1")
    assert reconciler.compared == 1
    # The controllers' writes of status (a pod ready, a volume bound): new versions, nothing a
    # repair reads changed. Nothing is rendered again.
    sts, pvc = objects[("StatefulSet", "agent-a1")], objects[("PersistentVolumeClaim", "data-agent-a1-0")]
    host.objects[("StatefulSet", "agent-a1")] = _versioned({**sts, "status": {"readyReplicas": 1}}, "40")
    host.objects[("PersistentVolumeClaim", "data-agent-a1-0")] = _versioned({**pvc, "status": {"phase": "Bound"}}, "41")
    await reconciler.reconcile("a1")
    assert reconciler.compared == 1
    # A label another manager adds (not one agentproxy applies): compared again, nothing repaired.
    labels = {**sts["metadata"]["labels"], "team": "x"}
    host.objects[("StatefulSet", "agent-a1")] = _versioned({**sts, "metadata": {**sts["metadata"], "labels": labels}},
                                                           "42")
    await reconciler.reconcile("a1")
    assert reconciler.compared == 2 and host.applied == []
    # A field of the spec agentproxy applies, changed at once with a status write: repaired.
    service = objects[("Service", "agent-a1-headless")]
    host.objects[("Service", "agent-a1-headless")] = _versioned(
        {**service, "spec": {**service["spec"], "ports": []}, "status": {"loadBalancer": {}}}, "43")
    await reconciler.reconcile("a1")
    assert reconciler.compared == 3 and [o["kind"] for o in host.applied] == ["Service"]


class Hosts(Host):
    """Several agents' objects, and the order their passes read them in."""

    def __init__(self, count: int) -> None:
        settings = settings_with("k8s_mode.namespace=ns1")
        self.specs = {f"a{i}": spec_for(settings, agent_id=f"a{i}") for i in range(count)}
        objects: dict[tuple[str, str], dict[str, Any]] = {}
        for spec in self.specs.values():
            made = render_agent(settings, spec)
            sts = stored(next(o for o in made if o["kind"] == "StatefulSet"))
            for obj in made:
                objects[(obj["kind"], obj["metadata"]["name"])] = _versioned(stored(plan.as_applied(obj, sts)), "1")
        super().__init__(None, objects)
        self.passes: list[str] = []

    def spec_of(self, agent_id: str) -> Any:
        self.passes.append(agent_id)
        return self.specs.get(agent_id)


async def test_a_sweep_takes_the_agents_one_after_another_and_leaves_those_with_a_pass_scheduled(monkeypatch):
    monkeypatch.setattr(reconcile, "SWEEP_SLICE", 0.0)  # a turn of the event loop before each agent
    host = Hosts(5)
    reconciler = Reconciler(host, delay=0)
    reconciler.schedule("a2", delay=30)  # an event's pass, later
    reconciler.sweep(["a0", "a1", "a2", "a3", "a4"])
    reconciler.forget("a4")  # deleted meanwhile
    assert reconciler.waiting == 4
    seen = []
    for _ in range(100):  # the event loop turns between two agents' passes
        await asyncio.sleep(0)
        seen.append(len(host.passes))
        if reconciler.waiting == 1:
            break
    assert sorted(host.passes) == ["a0", "a1", "a3"] and reconciler.waiting == 1  # a2's pass is still to come
    assert [n for n in (0, 1, 2, 3) if n in seen] == [0, 1, 2, 3] and host.applied == []
    await reconciler.close()
    assert reconciler.waiting == 0
