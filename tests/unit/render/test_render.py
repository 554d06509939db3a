"""The four rendered manifests of an agent: names, labels and the fields the
backend and the spec rely on."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from agentproxy import naming, render as render_module
from agentproxy.render import RenderCache, RenderError, dump_json, dump_yaml, render_agent
from agentproxy.settings import AGENT_PORT

from .._support import by_kind, container, render, settings_with, spec_for


def test_four_objects_in_apply_order(settings):
    objects = render_agent(settings, spec_for(settings))
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "PersistentVolumeClaim", "StatefulSet"]
    assert [o["apiVersion"] for o in objects] == ["v1", "v1", "v1", "apps/v1"]
    assert [o["metadata"]["name"] for o in objects] == [
        "agent-a1-config", "agent-a1-headless", "data-agent-a1-0", "agent-a1"]
    assert {o["metadata"]["namespace"] for o in objects} == {"agentapi-proxy"}


def test_labels_on_every_object(settings):
    objects = render(settings, agent_id="lbl", session="sess-9")
    expected = naming.standard_labels("lbl", "sess-9")
    for obj in objects.values():
        assert obj["metadata"]["labels"] == expected, obj["kind"]
    sts = objects["StatefulSet"]["spec"]
    assert sts["template"]["metadata"]["labels"] == expected
    assert sts["volumeClaimTemplates"][0]["metadata"]["labels"] == expected


def test_statefulset(settings):
    sts = render(settings, agent_id="a1")["StatefulSet"]
    spec = sts["spec"]
    assert spec["replicas"] == 1
    assert spec["serviceName"] == "agent-a1-headless"
    assert spec["selector"]["matchLabels"] == naming.selector_labels("a1")
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert len(sts["metadata"]["annotations"]["agentproxy.io/spec-hash"]) == 16


def test_container(settings):
    objects = render(settings, agent_id="a1", agent_type="aider")
    c = container(objects)
    assert c["image"] == "agentapi-proxy:latest"
    # The launcher runs agentapi and asks it to save within local_mode.state_save_interval of a change.
    assert c["command"] == ["python3"]
    assert c["args"] == ["-m", "agentproxy.launcher", "--save-interval", "2", "--work-dir", "/home/agent/work", "--",
                         "agentapi", "server", "--port", str(AGENT_PORT), "--type", "aider",
                         "--state-file", "/home/agent/work/.agentproxy/agentapi-state.json", "--", "aider"]
    assert c["volumeMounts"] == [{"name": "data", "mountPath": "/home/agent/work"}]
    assert c["ports"] == [{"name": "http", "containerPort": 3284, "protocol": "TCP"}]
    probe = c["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/status", "http")
    assert c["workingDir"] == "/home/agent/work"


def test_resources_from_settings():
    settings = settings_with("k8s_mode.resources.cpu_request=250m", "k8s_mode.resources.cpu_limit=2",
                             "k8s_mode.resources.memory_limit=2Gi", "k8s_mode.resources.storage_size=10Gi")
    objects = render(settings)
    assert container(objects)["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    assert objects["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    vct = objects["StatefulSet"]["spec"]["volumeClaimTemplates"][0]
    assert vct["spec"]["resources"]["requests"]["storage"] == "10Gi"


def test_resources_from_spec_overrides(settings):
    objects = render(settings, resources={"cpu_request": "50m", "cpu_limit": "200m", "memory_request": "64Mi",
                                          "memory_limit": "128Mi", "storage_size": "500Mi"})
    assert container(objects)["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}}
    assert objects["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "500Mi"


def test_data_volume_mounted_at_work_dir():
    settings = settings_with("k8s_mode.work_dir=/srv/agent", "k8s_mode.storage_class=fast-ssd",
                             "k8s_mode.pvc_retention_when_deleted=Delete")
    objects = render(settings)
    spec = objects["StatefulSet"]["spec"]
    vct = spec["volumeClaimTemplates"]
    assert [t["metadata"]["name"] for t in vct] == ["data"]
    assert vct[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert vct[0]["spec"]["storageClassName"] == "fast-ssd"
    assert container(objects)["volumeMounts"] == [{"name": "data", "mountPath": "/srv/agent"}]
    assert container(objects)["workingDir"] == "/srv/agent"
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"
    assert objects["PersistentVolumeClaim"]["spec"]["storageClassName"] == "fast-ssd"


def test_no_storage_class_by_default(settings):
    objects = render(settings)
    assert "storageClassName" not in objects["PersistentVolumeClaim"]["spec"]
    assert "storageClassName" not in objects["StatefulSet"]["spec"]["volumeClaimTemplates"][0]["spec"]


def test_env_from_configmap_and_optional_secret(settings):
    c = container(render(settings))
    assert c["envFrom"] == [{"configMapRef": {"name": "agent-a1-config"}}]
    c = container(render(settings_with("k8s_mode.secret_name=agent-credentials")))
    assert c["envFrom"] == [{"configMapRef": {"name": "agent-a1-config"}},
                            {"secretRef": {"name": "agent-credentials"}}]


def test_restricted_security_context(settings):
    objects = render(settings)
    pod = objects["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    sc = container(objects)["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_run_as_user_and_service_account():
    pod = render(settings_with("k8s_mode.run_as_user=4242", "k8s_mode.service_account=agents"))[
        "StatefulSet"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == 4242
    assert pod["serviceAccountName"] == "agents"


def test_headless_service(settings):
    objects = render(settings, agent_id="a1")
    spec = objects["Service"]["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["selector"] == naming.selector_labels("a1")
    assert spec["selector"].items() <= objects["StatefulSet"]["spec"]["template"]["metadata"]["labels"].items()
    assert spec["ports"] == [{"name": "http", "port": 3284, "targetPort": "http", "protocol": "TCP"}]


def test_pvc(settings):
    pvc = render(settings, agent_id="a1")["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "data-agent-a1-0"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_configmap_data(settings):
    objects = render(settings, agent_id="a1", session="s1", agent_type="goose", env={"FOO": "bar", "LEVEL": "3"},
                     message="Fix the tests")
    assert objects["ConfigMap"]["data"] == {
        "AGENTPROXY_AGENT_ID": "a1",
        "AGENTPROXY_SESSION": "s1",
        "AGENTPROXY_AGENT_TYPE": "goose",
        "AGENTPROXY_AGENT_COMMAND": "goose session",
        "AGENTAPI_INITIAL_PROMPT": "Fix the tests",  # agentapi sends it once and remembers that
        "FOO": "bar",
        "LEVEL": "3",
    }
    assert "AGENTAPI_INITIAL_PROMPT" not in render(settings)["ConfigMap"]["data"]


def test_config_hash_follows_configmap_content(settings):
    def config_hash(**kwargs):
        return render(settings, **kwargs)["StatefulSet"]["spec"]["template"]["metadata"]["annotations"][
            "agentproxy.io/config-hash"]
    assert config_hash(env={"A": "1"}) == config_hash(env={"A": "1"}) != config_hash(env={"A": "2"})


def test_namespace_and_image_from_settings():
    settings = settings_with("k8s_mode.namespace=team-a", "k8s_mode.image=reg.local/agents:2",
                             "k8s_mode.image_pull_policy=Always")
    objects = render(settings)
    assert {o["metadata"]["namespace"] for o in objects.values()} == {"team-a"}
    assert (container(objects)["image"], container(objects)["imagePullPolicy"]) == ("reg.local/agents:2", "Always")


def test_rendering_is_deterministic(settings):
    spec = spec_for(settings, env={"B": "2", "A": "1"}, message="hi")
    first, second = render_agent(settings, spec), render_agent(settings, spec)
    assert first == second
    assert dump_yaml(first) == dump_yaml(second)
    assert dump_json(first) == dump_json(second)


def test_dumps_parse_back(settings):
    objects = render_agent(settings, spec_for(settings))
    assert list(yaml.safe_load_all(dump_yaml(objects))) == objects
    assert dump_yaml(objects).startswith("---\n")
    listed = json.loads(dump_json(objects))
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    assert listed["items"] == objects
    assert by_kind(listed["items"])["StatefulSet"]["spec"]["replicas"] == 1


def test_an_agent_is_rendered_once_by_spec_and_suspension(settings, monkeypatch):
    renders = []
    original = render_module.render_agent
    def counted(*args: Any, **kwargs: Any) -> Any:
        renders.append(args[1])
        return original(*args, **kwargs)
    monkeypatch.setattr(render_module, "render_agent", counted)
    cache = RenderCache(settings, max_entries=2)
    spec = spec_for(settings, env={"A": "1"})
    first = cache.agent(spec)
    again = cache.agent(spec_for(settings, env={"A": "1"}))  # an equal spec
    assert again == first and all(a is b for a, b in zip(again, first, strict=True)) and len(renders) == 1
    assert again is not first  # a list of its own; the manifests are shared
    suspended = cache.agent(spec, replicas=0, suspension='{"at": "x"}')
    assert by_kind(suspended)["StatefulSet"]["spec"]["replicas"] == 0 and len(renders) == 2
    # Specs that differ only in what their hash leaves out (env) are rendered each.
    other = cache.agent(spec_for(settings, env={"A": "2"}))
    assert by_kind(other)["ConfigMap"]["data"]["A"] == "2" and len(renders) == 3
    cache.agent(spec)  # the oldest of three was dropped (at most two are kept)
    assert len(renders) == 4 and cache.agent(spec) == first
    assert first == original(settings, spec)


def test_a_render_that_fails_is_not_kept(settings):
    cache = RenderCache(settings)
    spec = spec_for(settings, env={"GITHUB_TOKEN": "x"})
    for _ in range(2):
        with pytest.raises(RenderError, match="env.GITHUB_TOKEN"):
            cache.agent(spec)
