"""``deploy/``: the kustomize base and overlays and the Helm chart render the objects
the proxy needs in the cluster, agree with each other, and take their RBAC from
the template ``agentproxy rbac`` renders."""

from __future__ import annotations

import subprocess
import sys

import yaml

from agentproxy.render import render_rbac
from deploy import generate

from .._support import settings_with
from .manifests import DEPLOY, by_key, comparable, helm_template, kustomize


def test_the_generated_rbac_files_are_current():
    assert generate.stale() == [], "run bin/just deploy-manifests"
    result = subprocess.run([sys.executable, str(DEPLOY / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_base_has_every_object_and_rbac_is_what_agentproxy_rbac_renders():
    objects = by_key(kustomize(DEPLOY))
    kinds = sorted(kind for kind, _ in objects)
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "PodDisruptionBudget", "Role", "RoleBinding",
                     "Service", "ServiceAccount"]
    rendered = render_rbac(settings_with("k8s_mode.namespace=agentapi-proxy"), "agentapi-proxy")
    for obj in rendered:
        assert objects[(obj["kind"], "agentapi-proxy")] == obj
    namespace = objects[("Namespace", "agentapi-proxy")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(o["metadata"].get("namespace") == "agentapi-proxy" for k, o in objects.items() if k[0] != "Namespace")


def _deployment(objects):
    return next(o for (kind, _), o in objects.items() if kind == "Deployment")


def test_the_deployment_is_two_restricted_replicas_that_stop_gracefully():
    objects = by_key(kustomize(DEPLOY))
    deployment = objects[("Deployment", "agentapi-proxy")]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "agentapi-proxy"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # Restricted Pod Security: non-root, no privilege escalation, no capabilities, a seccomp profile.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(container["resources"]) == {"requests", "limits"}
    # Terminating: preStop, then SIGTERM and the shutdown timeout, all within the grace period.
    shutdown = int(container["args"][container["args"].index("--shutdown-timeout") + 1])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + shutdown
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["podAffinityTerm"]["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # Settings from the ConfigMap, the namespace from the pod, API key digests from a Secret.
    env = {e["name"]: e for e in container["env"]}
    assert env["AGENTAPI_K8S_MODE_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["AGENTAPI_SERVER_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "agentapi-proxy-api-keys",
                                                                             "key": "api-keys"}
    config = next(o for (kind, _), o in objects.items() if kind == "ConfigMap")
    assert yaml.safe_load(config["data"]["config.yaml"]) == {"server": {"host": "0.0.0.0", "port": 8080},
                                                              "k8s_mode": {"enabled": True}}
    assert {"name": "config", "configMap": {"name": config["metadata"]["name"]}} in pod["volumes"]
    # The proxy's objects never carry the label that marks an agent's objects.
    assert all("app.kubernetes.io/managed-by" not in (o["metadata"].get("labels") or {}) for o in objects.values())
    service = objects[("Service", "agentapi-proxy")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = objects[("PodDisruptionBudget", "agentapi-proxy")]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"] and pdb["spec"]["maxUnavailable"] == 1


def test_the_dev_overlay_is_one_replica_without_a_disruption_budget():
    objects = by_key(kustomize(DEPLOY / "overlays" / "dev"))
    assert objects[("Deployment", "agentapi-proxy")]["spec"]["replicas"] == 1
    assert not any(kind == "PodDisruptionBudget" for kind, _ in objects)


def test_the_real_node_overlay_sends_pods_to_the_real_node_with_imported_images():
    objects = by_key(kustomize(DEPLOY / "overlays" / "real-node"))
    annotations = objects[("Namespace", "agentapi-proxy")]["metadata"]["annotations"]
    assert annotations["scheduler.alpha.kubernetes.io/node-selector"] == "agentproxy.io/real-node=true"
    assert _deployment(objects)["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    config = yaml.safe_load(next(o for (k, _), o in objects.items() if k == "ConfigMap")["data"]["config.yaml"])
    assert config["k8s_mode"]["image_pull_policy"] == "Never" and config["k8s_mode"]["pod_address"] == "pod_ip"


def test_helm_template_renders_what_kustomize_renders():
    helm = comparable(helm_template("--set", "namespace.create=true"))
    kust = comparable(kustomize(DEPLOY))
    assert sorted(helm) == sorted(kust)
    for key in kust:
        assert helm[key] == kust[key], key


def test_helm_follows_the_release_and_its_values():
    objects = by_key(helm_template("--set", "replicaCount=1", "--set", "podDisruptionBudget.enabled=false",
                                   "--set", "image.tag=v1", release="team", namespace="agents"))
    assert ("Namespace", "agents") not in objects  # helm installs into an existing namespace
    assert not any(kind == "PodDisruptionBudget" for kind, _ in objects)
    deployment = objects[("Deployment", "team-agentapi-proxy")]
    assert deployment["metadata"]["namespace"] == "agents" and deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "agentproxy:v1"
    binding = objects[("RoleBinding", "team-agentapi-proxy")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "team-agentapi-proxy", "namespace": "agents"}]
    assert binding["roleRef"]["name"] == "team-agentapi-proxy"
    assert objects[("Role", "team-agentapi-proxy")]["rules"] == render_rbac(settings_with())[1]["rules"]

