"""A suspended agent in k8s mode, without a cluster: the replicas and annotation the templates
render from the model, the state of a suspended (or suspending) agent, its clock of activity,
and that re-applying a suspended agent (a repeat, a repair) keeps it suspended."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from agentproxy import naming
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s import model
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.kinds import STATEFULSET, Kind
from agentproxy.backends.suspension import Suspension
from agentproxy.render import RenderError, default_templates_dir, render_agent

from .._support import settings_with, spec_for
from .support import BOUND, READY_POD, stored

SUSPENSION = Suspension("idle", datetime(2026, 3, 1, 12, tzinfo=UTC))


def statefulset(suspension: Suspension | None) -> dict[str, Any]:
    settings = settings_with("k8s_mode.namespace=ns1")
    return model.statefulset_of(render_agent(settings, spec_for(settings), **model.workload(suspension)))


def test_the_model_alone_decides_the_replicas_and_the_templates_render_them():
    assert model.desired_replicas(None) == 1 and model.desired_replicas(SUSPENSION) == 0
    running, suspended = statefulset(None), statefulset(SUSPENSION)
    assert running["spec"]["replicas"] == 1
    assert model.SUSPENDED_ANNOTATION not in running["metadata"]["annotations"]
    assert suspended["spec"]["replicas"] == 0
    assert suspended["metadata"]["annotations"][model.SUSPENDED_ANNOTATION] == SUSPENSION.to_json()
    assert model.suspension_of(suspended) == SUSPENSION and model.suspension_of(running) is None
    # Everything else is the same: a suspend changes nothing the pod would be made from.
    for obj in (running, suspended):
        obj["spec"].pop("replicas")
        obj["metadata"]["annotations"].pop(model.SUSPENDED_ANNOTATION, None)
    assert running == suspended


def test_a_template_that_does_not_render_the_replicas_is_refused(tmp_path):
    template = tmp_path / "custom"
    template.mkdir()
    shipped = (default_templates_dir() / "statefulset.yaml.j2").read_text(encoding="utf-8")
    (template / "statefulset.yaml.j2").write_text(shipped.replace("replicas: {{ replicas }}", "replicas: 1"))
    settings = settings_with("k8s_mode.namespace=ns1", f"templates_dir={template}")
    render_agent(settings, spec_for(settings))  # a running agent renders as before
    with pytest.raises(RenderError, match="must render spec.replicas from `replicas`"):
        render_agent(settings, spec_for(settings), **model.workload(SUSPENSION))


def test_a_suspended_agent_is_stopping_until_its_pod_is_gone():
    settings = settings_with("k8s_mode.namespace=ns1")
    spec = spec_for(settings)
    objects = render_agent(settings, spec, **model.workload(SUSPENSION))
    claim, sts = stored(objects[0]), stored(model.statefulset_of(objects))
    stopping = model.agent_state(spec, model.AgentObjects(claim, sts, READY_POD, BOUND), namespace="ns1",
                                 pod_address="pod_ip")
    assert (stopping.status, stopping.reason, stopping.suspended, stopping.upstream) == (
        AgentStatus.STOPPING, "Suspending", True, None)
    suspended = model.agent_state(spec, model.AgentObjects(claim, sts, None, BOUND), namespace="ns1",
                                  pod_address="pod_ip")
    assert (suspended.status, suspended.reason, suspended.suspended) == (AgentStatus.SUSPENDED, "Suspended", True)
    assert suspended.message == SUSPENSION.message()
    deleting = copy.deepcopy(sts)
    deleting["metadata"]["deletionTimestamp"] = "2026-03-01T13:00:00Z"
    state = model.agent_state(spec, model.AgentObjects(claim, deleting, None, BOUND), namespace="ns1",
                              pod_address="pod_ip")
    assert (state.status, state.reason) == (AgentStatus.STOPPING, "Terminating")  # a delete wins


def test_last_active_is_the_later_of_the_annotation_and_the_pod_becoming_ready():
    pod = copy.deepcopy(READY_POD)
    pod["status"]["conditions"][1]["lastTransitionTime"] = "2026-03-01T10:00:00Z"
    sts: dict[str, Any] = {"metadata": {"annotations": {}}}
    assert model.last_active(sts, pod) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    patch = model.activity_patch(datetime(2026, 3, 1, 11, 30, 0, 999, tzinfo=UTC))
    assert patch == {"metadata": {"annotations": {model.LAST_ACTIVE_ANNOTATION: "2026-03-01T11:30:00Z"}}}
    sts["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    assert model.last_active(sts, pod) == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    assert model.last_active(sts, None) == datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
    assert model.last_active(None, None) is None


def test_a_scale_applies_only_over_the_version_it_read():
    sts = statefulset(SUSPENSION)
    guarded = model.unless_changed(sts, "41")
    assert guarded["metadata"]["resourceVersion"] == "41" and "resourceVersion" not in sts["metadata"]


class Cache:
    """The one read of the watch cache that rendering needs, held in a dict."""

    def __init__(self, objects: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind.name, name))


def test_re_applying_keeps_a_suspended_agent_suspended_and_repairs_an_unsuspended_one():
    """Whatever re-applies the StatefulSet (a repeated create, a drift repair) renders it through
    the backend, which takes the suspension from the live object: a suspended agent is no drift,
    while a running agent scaled to 0 behind the proxy's back is."""
    settings = settings_with("k8s_mode.namespace=ns1")
    spec = spec_for(settings)
    backend = K8sBackend(settings)
    name = naming.statefulset_name("a1")
    live_suspended = stored(statefulset(SUSPENSION))
    backend.cache = Cache({(STATEFULSET.name, name): live_suspended})  # type: ignore[assignment]  # the one lookup made of it
    want = model.statefulset_of(backend.render(spec))
    assert want["spec"]["replicas"] == 0 and not model.drifted(live_suspended, want)

    scaled_by_hand = stored(statefulset(None))
    scaled_by_hand["spec"]["replicas"] = 0
    backend.cache = Cache({(STATEFULSET.name, name): scaled_by_hand})  # type: ignore[assignment]  # the one lookup made of it
    want = model.statefulset_of(backend.render(spec))
    assert want["spec"]["replicas"] == 1 and model.drifted(scaled_by_hand, want)
    # Suspend and resume name the suspension they want, whatever the live object says.
    assert model.statefulset_of(backend.render(spec, None))["spec"]["replicas"] == 1
    assert model.statefulset_of(backend.render(spec, SUSPENSION))["spec"]["replicas"] == 0
