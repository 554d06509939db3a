"""The real node's rendered settings keep everything in its own directory and
carry what this kind of machine needs (see the README's real-node section)."""

from __future__ import annotations

import ipaddress
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "testenv"))
# The imports below (E402) need the path entry above.
import nodeconfig  # noqa: E402
from nodeconfig import NodePaths  # noqa: E402

PATHS = NodePaths(Path("/state/node"))


def test_containerd_keeps_its_state_in_the_node_directory_and_restricts_oom_scores():
    config = tomllib.loads(nodeconfig.containerd_toml(PATHS, "agentproxy.test/pause:1"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert config["root"].startswith("/state/node/") and config["state"].startswith("/state/node/")
    assert config["grpc"]["address"] == str(PATHS.socket)
    assert cri["restrict_oom_score_adj"] is True and cri["netns_mounts_under_state_dir"] is True
    assert cri["sandbox_image"] == "agentproxy.test/pause:1"
    assert cri["cni"]["conf_dir"].startswith("/state/node/")
    assert cri["containerd"]["runtimes"]["runc"]["options"] == {"SystemdCgroup": False, "Root": str(PATHS.runc_root)}
    assert config["plugins"]["io.containerd.internal.v1.opt"]["path"].startswith("/state/node/")


def test_pods_get_a_bridge_that_routes_nothing_off_the_machine():
    net = nodeconfig.cni_conflist(PATHS)["plugins"][0]
    assert (net["isGateway"], net["isDefaultGateway"], net["ipMasq"]) == (False, False, False)
    # One route beyond the bridge: Service cluster IPs, to the node (kube-proxy's rules).
    assert net["ipam"]["routes"] == [{"dst": nodeconfig.SERVICE_CIDR, "gw": nodeconfig.NODE_IP}]
    assert ipaddress.IPv4Network(nodeconfig.SERVICE_CIDR).subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))
    subnet = ipaddress.IPv4Network(net["ipam"]["ranges"][0][0]["subnet"])
    assert subnet.subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))  # RFC 2544
    assert ipaddress.ip_address(nodeconfig.NODE_IP) in subnet
    assert net["ipam"]["dataDir"].startswith("/state/node/")


def test_the_kubelet_is_set_up_for_this_machine_kind_and_tainted():
    config = nodeconfig.kubelet_config(PATHS, Path("/state/pki"), 32306, 32307)
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["makeIPTablesUtilChains"] is False and config["failSwapOn"] is False
    assert config["address"] == nodeconfig.NODE_IP and config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0 and config["authentication"]["anonymous"]["enabled"] is False
    assert config["cgroupRoot"] == f"/{nodeconfig.CGROUP_ROOT}"
    assert config["registerWithTaints"] == [nodeconfig.TAINT]
    assert config["podLogsDir"].startswith("/state/node/")
    assert config["imageGCHighThresholdPercent"] == 100  # images are imported, never pulled again


def test_local_path_makes_local_volumes_only_once_a_pod_is_scheduled():
    objects = dict((body["kind"], body) for _, body in nodeconfig.provisioner_objects("helper:1"))
    sc = objects["StorageClass"]
    assert sc["metadata"]["annotations"]["defaultVolumeType"] == "local"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer" and sc["reclaimPolicy"] == "Delete"
    assert '"imagePullPolicy": "Never"' in objects["ConfigMap"]["data"]["helperPod.yaml"]
    assert nodeconfig.provisioner_config(PATHS)["nodePathMap"][0]["paths"] == [str(PATHS.volumes)]


def test_kube_proxy_writes_service_rules_and_leaves_the_rest_of_the_host_alone():
    config = nodeconfig.kube_proxy_config(PATHS, 32308, 32309)
    assert config["mode"] == "iptables" and config["hostnameOverride"] == nodeconfig.NODE_NAME
    assert config["clientConnection"]["kubeconfig"].startswith("/state/node/")
    assert config["healthzBindAddress"] == "127.0.0.1:32308" and config["metricsBindAddress"] == "127.0.0.1:32309"
    assert config["nodePortAddresses"] == [f"{nodeconfig.NODE_IP}/32"]
    # No localhost NodePorts (route_localnet), no conntrack or OOM-score changes.
    assert config["iptables"]["localhostNodePorts"] is False
    assert config["conntrack"]["maxPerCore"] == 0 and config["conntrack"]["min"] == 0
    assert config["oomScoreAdj"] == 0
    assert config["clusterCIDR"] == nodeconfig.POD_SUBNET
