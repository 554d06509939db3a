"""The real node's configuration: pure functions that render containerd's, the
kubelet's, CNI's and local-path-provisioner's settings from where things live.

Everything the node writes stays under its state directory (containerd's root
and state, runc's state, network namespaces, CNI configuration and address
leases, the kubelet's root and pod logs, the volumes), so that taking it down
is removing one directory once its mounts are gone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "real-node-0"
BRIDGE = "agentproxy0"
# RFC 2544's range for network benchmarks: never routed, never anyone's LAN.
NODE_IP = "198.18.0.1"
POD_SUBNET = "198.18.0.0/24"
NODE_CIDR = f"{NODE_IP}/24"
SERVICE_CIDR = "198.18.1.0/24"
"""Service cluster IPs of a cluster with a real node: pods route them to the node,
where kube-proxy's rules translate them; the host routes them to the bridge."""
KUBERNETES_SERVICE_IP = "198.18.1.1"
"""The ``kubernetes`` Service's cluster IP (the first of SERVICE_CIDR)."""
NETWORK = "agentproxy-real-node"
CNI_BIN_DIR = "/usr/lib/cni"
CGROUP_ROOT = "agentproxy-real-node"
"""Parent of every pod cgroup, in each cgroup hierarchy."""
LABEL = "agentproxy.io/real-node"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
"""Keeps pods that do not ask for the real node (the kwok suite's) off it."""
STORAGE_CLASS = "local-path"
PROVISIONER = "rancher.io/local-path"
PROVISIONER_NAMESPACE = "local-path-storage"
PROVISIONER_ACCOUNT = "local-path-provisioner-service-account"
PROVISIONER_CONFIGMAP = "local-path-config"


@dataclass(frozen=True)
class NodePaths:
    """Where the real node keeps its state (``root`` is ``CLUSTER_DIR/node``)."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def runc_root(self) -> Path:
        return self.root / "runc"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_leases(self) -> Path:
        return self.root / "cni" / "leases"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.root / "kubelet.kubeconfig"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def kube_proxy_kubeconfig(self) -> Path:
        return self.root / "kube-proxy.kubeconfig"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def provisioner_config(self) -> Path:
        return self.root / "local-path.json"


def _toml(value: str) -> str:
    # A TOML basic string has JSON's escapes.
    return json.dumps(value)


def containerd_toml(paths: NodePaths, sandbox_image: str) -> str:
    """containerd's config.toml (version 2)."""
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = {_toml(str(paths.containerd_root))}
state = {_toml(str(paths.containerd_state))}
# Snapshotters this node does not use would only log errors at start.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {_toml(str(paths.socket))}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml(str(paths.containerd_root / "opt"))}

{cri}]
  sandbox_image = {_toml(sandbox_image)}
  # Without CAP_SYS_RESOURCE (virtual machines like this one) runc cannot lower
  # oom_score_adj below its own; restricting it keeps sandboxes starting.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true

{cri}.cni]
  bin_dir = {_toml(CNI_BIN_DIR)}
  conf_dir = {_toml(str(paths.cni_conf_dir))}
  max_conf_num = 1

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {_toml(str(paths.runc_root))}
"""


def cni_conflist(paths: NodePaths) -> dict:
    """A bridge network that is not the pods' gateway and masquerades nothing:
    pods reach the bridge's subnet (the node and each other) and, through the
    node, Service cluster IPs, which kube-proxy's rules turn into pod IPs or the
    API server on the node's address. Nothing else has a route."""
    return {
        "cniVersion": "1.0.0",
        "name": NETWORK,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": False,
            "isDefaultGateway": False,
            "ipMasq": False,
            "hairpinMode": False,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": POD_SUBNET, "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.250"}]],
                "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                "dataDir": str(paths.cni_leases),
            },
        }],
    }


def kubelet_config(paths: NodePaths, pki: Path, port: int, healthz_port: int) -> dict:
    """KubeletConfiguration for this machine kind (see docs/real-node.md)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.socket}",
        # cgroup v1 hosts: 1.35 refuses them unless told otherwise.
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failSwapOn": False,
        # Its utility chains would leave a rule dropping non-loopback traffic to 127/8.
        "makeIPTablesUtilChains": False,
        "podLogsDir": str(paths.pod_logs),
        "registerWithTaints": [TAINT],
        # Images come from archives, never from a registry: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A shared test machine: evict only when really out of resources.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        "maxPods": 110,
    }


def kube_proxy_config(paths: NodePaths, healthz_port: int, metrics_port: int) -> dict:
    """KubeProxyConfiguration: iptables rules for Service cluster IPs, and
    nothing else on the host: no NodePorts but on the node's address, no
    localhost NodePorts (they need ``route_localnet``), and conntrack's kernel
    settings and its own OOM score left as they are."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(paths.kube_proxy_kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": NODE_IP,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_SUBNET,
        "detectLocalMode": "ClusterCIDR",
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "30s",
                     "minSyncPeriod": "1s"},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "oomScoreAdj": 0,
    }


def provisioner_objects(helper_image: str) -> list[tuple[str, dict]]:
    """(API path, object) of what local-path-provisioner needs in the cluster.
    Volumes are ``local`` PVs (``defaultVolumeType: local``): the kubelet applies
    a pod's fsGroup to them, so a non-root agent can write its data volume."""
    ns = PROVISIONER_NAMESPACE
    helper_pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "helper-pod"},
        "spec": {"containers": [{"name": "helper-pod", "image": helper_image, "imagePullPolicy": "Never"}]},
    }
    return [
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        (f"/api/v1/namespaces/{ns}/serviceaccounts",
         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": PROVISIONER_ACCOUNT, "namespace": ns}}),
        (f"/api/v1/namespaces/{ns}/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": PROVISIONER_CONFIGMAP, "namespace": ns},
            "data": {
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": json.dumps(helper_pod),
            },
        }),
        ("/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {"defaultVolumeType": "local"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
        }),
    ]


def provisioner_config(paths: NodePaths) -> dict:
    """local-path-provisioner's config.json: volumes under the node's state."""
    return {"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(paths.volumes)]}]}
