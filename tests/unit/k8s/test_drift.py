"""Drift of the fields agentproxy owns, without a cluster: what the API server adds and what
other managers set is not drift; a changed or removed field agentproxy applies is; lists
merged by key, quantities, a PVC raised out of band and immutable fields; the objects
agentproxy wants, whole agents and abandoned claims."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from agentproxy.backends.k8s import model, plan
from agentproxy.backends.k8s.drift import differences, drifted, larger_quantity
from agentproxy.render import render_agent

from .._support import settings_with, spec_for


def objects() -> dict[str, dict[str, Any]]:
    settings = settings_with("k8s_mode.namespace=ns1")
    return {o["kind"]: o for o in render_agent(settings, spec_for(settings, env={"MODE": "calm"}))}


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as the API server keeps it: defaults added, quantities in canonical form,
    fields of other managers and a status beside it."""
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="u1", resourceVersion="7", creationTimestamp="2026-01-01T00:00:00Z",
                            managedFields=[{"manager": "agentproxy"}])
    live["metadata"].setdefault("labels", {})["team.example.com/owner"] = "platform"  # another controller's
    if obj["kind"] == "StatefulSet":
        spec = live["spec"]
        spec["revisionHistoryLimit"] = 10
        pod = spec["template"]["spec"]
        pod["dnsPolicy"] = "ClusterFirst"
        main = pod["containers"][0]
        main["terminationMessagePath"] = "/dev/termination-log"
        main["resources"]["limits"]["cpu"] = "500m"
        main["resources"]["requests"]["cpu"] = "0.1"  # the same quantity, written otherwise
        # A sidecar injected by another controller, and an env var it added.
        pod["containers"].insert(0, {"name": "mesh-proxy", "image": "mesh:1"})
        main["env"].append({"name": "MESH", "value": "on"})
        live["status"] = {"replicas": 1, "readyReplicas": 1}
    if obj["kind"] == "Service":
        live["spec"]["ports"][0]["targetPort"] = "http"
        live["spec"]["type"] = "ClusterIP"
    if obj["kind"] == "PersistentVolumeClaim":
        live["spec"]["volumeName"] = "pv-1"
        live["spec"]["volumeMode"] = "Filesystem"
        live["status"] = {"phase": "Bound", "capacity": {"storage": "1Gi"}}
    return live


def test_what_the_server_and_other_managers_add_is_not_drift():
    for kind, obj in objects().items():
        assert differences(as_stored(obj), obj) == [], kind


def test_a_changed_or_removed_field_agentproxy_applies_is_drift():
    sts = objects()["StatefulSet"]
    live = as_stored(sts)
    agentapi = live["spec"]["template"]["spec"]["containers"][1]
    agentapi["image"] = "attacker/image:1"
    del live["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    live["spec"]["replicas"] = 0
    assert differences(live, sts) == [
        "metadata.labels.app.kubernetes.io/managed-by", "spec.replicas",
        "spec.template.spec.containers[agentapi].image"]

    configmap = objects()["ConfigMap"]
    live = as_stored(configmap)
    live["data"]["MODE"] = "tampered"
    assert differences(live, configmap) == ["data.MODE"]
    assert differences(None, configmap) == ["(missing)"]

    service = objects()["Service"]
    live = as_stored(service)
    live["spec"]["ports"] = [{"name": "http", "port": 80, "protocol": "TCP"}]
    assert differences(live, service) == ["spec.ports[3284,TCP]"]


def test_atomic_lists_must_be_equal_and_quantities_compare_by_value():
    sts = objects()["StatefulSet"]
    live = as_stored(sts)
    live["spec"]["template"]["spec"]["containers"][1]["args"].append("--extra")
    assert differences(live, sts) == ["spec.template.spec.containers[agentapi].args"]
    live = as_stored(sts)
    live["spec"]["template"]["spec"]["containers"][1]["resources"]["limits"]["memory"] = "1Gi"
    assert differences(live, sts) == ["spec.template.spec.containers[agentapi].resources.limits.memory"]


def test_a_pvc_raised_out_of_band_is_kept_and_immutable_fields_are_not_compared():
    pvc = objects()["PersistentVolumeClaim"]
    live = as_stored(pvc)
    live["spec"]["resources"]["requests"]["storage"] = "5Gi"
    live["spec"]["storageClassName"] = "another-class"  # immutable: no apply could change it
    assert not drifted(live, pvc)
    live["spec"]["resources"]["requests"]["storage"] = "512Mi"
    assert differences(live, pvc) == ["spec.resources.requests.storage"]
    sts = objects()["StatefulSet"]
    live = as_stored(sts)
    live["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] = "3Gi"
    assert not drifted(live, sts)


def test_a_volume_raised_out_of_band_is_never_shrunk():
    rendered = list(objects().values())
    pvc = as_stored(objects()["PersistentVolumeClaim"])
    pvc["spec"]["resources"]["requests"]["storage"] = "5Gi"
    live = model.AgentObjects(None, None, None, pvc)
    wanted = {s.kind: s.obj for s in plan.plan(rendered, live, plan.Purpose.REAPPLY).steps}
    assert wanted["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert rendered[2]["spec"]["resources"]["requests"]["storage"] == "1Gi"  # the rendered object is untouched
    fresh = {s.kind: s.obj for s in plan.plan(rendered, model.AgentObjects(None, None, None, None),
                                                plan.Purpose.REAPPLY).steps}
    assert fresh["PersistentVolumeClaim"] is rendered[2]  # nothing to change: not even copied
    assert [k.name for k in plan.APPLIED] == ["PersistentVolumeClaim", "StatefulSet", "Service", "ConfigMap"]
    assert larger_quantity("1Gi", "1024Mi") == "1Gi" and larger_quantity("1Gi", None) == "1Gi"


def test_a_claim_without_a_statefulset_is_abandoned_after_the_grace():
    claim = as_stored(objects()["ConfigMap"])
    made = datetime(2026, 1, 1, tzinfo=UTC)
    young = model.AgentObjects(claim, None, None, None)
    assert model.abandoned_claim(young, made + timedelta(seconds=20), 60) == 40
    assert model.abandoned_claim(young, made + timedelta(seconds=61), 60) == 0
    whole = model.AgentObjects(claim, as_stored(objects()["StatefulSet"]), None, None)
    assert model.abandoned_claim(whole, made + timedelta(hours=1), 60) is None
    assert model.abandoned_claim(model.AgentObjects(None, None, None, None), made, 60) is None


def test_an_agent_is_whole_once_its_claim_is_there_and_its_service_owned_by_its_statefulset():
    sts = as_stored(objects()["StatefulSet"])
    claim = as_stored(objects()["ConfigMap"])
    service = as_stored(objects()["Service"])
    assert not model.whole(model.AgentObjects(claim, sts, None, None, service=service))  # not owned yet
    owned = plan.as_applied(service, sts)
    assert plan.as_applied(claim, sts) == claim  # the claim is nobody's: a create never writes it again
    assert model.whole(model.AgentObjects(claim, sts, None, None, service=owned))
    assert not model.whole(model.AgentObjects(None, sts, None, None, service=owned))
    assert not model.whole(model.AgentObjects(claim, sts, None, None))
    assert not model.whole(model.AgentObjects(claim, None, None, None, service=owned))
