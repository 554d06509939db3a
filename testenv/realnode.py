"""One real node for the test cluster (``AGENTPROXY_REAL_NODE=1``; root, Linux).

Like kind without Docker: containerd, runc and the CNI plugins from the
distribution's packages (installed when missing), the kubelet of the cluster's
own release, a bridge in 198.18.0.0/24 that routes nothing off the machine,
rancher's local-path-provisioner (kind's default storage) making ``local``
volumes, and images imported from OCI archives (``image.py``), never pulled.

The node is tainted ``agentproxy.io/real-node=true:NoSchedule`` and labelled
``agentproxy.io/real-node=true``: pods that do not ask for it (the kwok suite's)
never land on it, and a namespace annotated for it (PodNodeSelector and
PodTolerationRestriction) sends every pod there. kwok leaves it alone.

Service cluster IPs route from its pods: kube-proxy of the same release writes
the iptables rules, the pods' only route beyond the bridge sends SERVICE_CIDR to
the node, and the API server, advertised on the node's address, is reached there
through a relay to its loopback address (``relay.py``): a pod that talks to the
API server (agentproxy itself, in-cluster) finds it as any cluster's pods do.

Everything it writes lives in ``CLUSTER_DIR/node``; what it changes outside
(bridge, cgroups, kernel settings, iptables, a few paths) is recorded before
and undone by ``down`` (see ``host.py``), also after a crash or an interruption.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from . import host, image, procs
from .apiclient import api, create, kubeconfig_text, node_ready
from .layout import HERE, Layout
from .nodeconfig import (
    KUBERNETES_SERVICE_IP,
    LABEL,
    NODE_CIDR,
    NODE_IP,
    NODE_NAME,
    PROVISIONER,
    PROVISIONER_ACCOUNT,
    PROVISIONER_CONFIGMAP,
    PROVISIONER_NAMESPACE,
    SERVICE_CIDR,
    NodePaths,
    cni_conflist,
    containerd_toml,
    kube_proxy_config,
    kubelet_config,
    provisioner_config,
    provisioner_objects,
)
from .pki import write_serving_cert

COMPONENTS = ("containerd", "apiserver-relay", "kubelet", "kube-proxy", "local-path-provisioner")
NODE_USER = f"system:node:{NODE_NAME}"
KUBELET_CLIENT = "kube-apiserver-kubelet-client"
PROXY_USER = "system:kube-proxy"
PKI_USERS = {NODE_USER: "system:nodes", KUBELET_CLIENT: "system:masters", PROXY_USER: None}
"""Client certificates: the kubelet's node identity, the API server's to the
kubelet, and kube-proxy's (bound to ``system:node-proxier`` by the API server's defaults)."""
ADVERTISE_ADDRESS = NODE_IP
"""The API server's address in the ``kubernetes`` Service's endpoints."""
ADMISSION_PLUGINS = ["NodeRestriction", "PodNodeSelector", "PodTolerationRestriction"]


def _log(message: str) -> None:
    procs.log(f"real node: {message}")


def binaries(layout: Layout) -> list[Path]:
    """The node's binaries from the build cache."""
    return [layout.binary("kubelet", "kubelet"), layout.binary("kube-proxy", "kube-proxy"),
            layout.binary("local-path-provisioner", "local-path-provisioner")]


def apiserver_args(layout: Layout) -> list[str]:
    """What the API server needs for a real kubelet: node authorization, and
    reaching the kubelet (logs, exec) by its IP with a client certificate."""
    pki = layout.pki
    return ["--authorization-mode=Node,RBAC", "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={pki / f'{KUBELET_CLIENT}.crt'}",
            f"--kubelet-client-key={pki / f'{KUBELET_CLIENT}.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}"]


def preflight(layout: Layout) -> None:
    """Fail before anything changes when the node cannot start here. The real node of another
    cluster is taken down first when nothing of that cluster runs any more (a run killed
    half-way, a machine whose processes were all ended, leave one behind); one that runs is
    never touched."""
    host.preflight()
    record = host.read_record()
    if record is not None and record["owner"] != str(layout.state):
        other = Layout(layout.cache, Path(record["owner"]), layout.port_base)
        running = still_running(other, record["node_dir"])
        if running:
            raise SystemExit(f"[real-node] error: the real node of the cluster in {record['owner']} is on this "
                             f"host ({', '.join(running)} running); take it down first: "
                             f"AGENTPROXY_CLUSTER_DIR={record['owner']} bin/just cluster-down")
        _log(f"the real node of the cluster in {other.state} was left behind (none of its processes runs); "
             "taking it down")
        down(other, record)


def still_running(layout: Layout, node_dir: str) -> list[str]:
    """What still runs of the cluster in ``layout``: the components its pid files name that are
    the very processes it started, and the processes of its node (``host.ours``)."""
    names = sorted(path.stem for path in (layout.state / "run").glob("*.pid"))
    running = [name for name in names if procs.owned_process(layout.state, name) is not None]
    return running + [f"pid {proc.pid}" for proc in host.node_processes(node_dir)]


def _mine(layout: Layout) -> dict | None:
    record = host.read_record()
    return record if record is not None and record["owner"] == str(layout.state) else None


def present(layout: Layout) -> bool:
    """Whether this cluster has (or had and did not clean up) a real node."""
    return layout.node.exists() or _mine(layout) is not None


def healthy(layout: Layout) -> bool:
    return all(procs.owned_process(layout.state, c) for c in COMPONENTS) and node_ready(layout, NODE_NAME)


def _ctr(paths: NodePaths, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ctr", "--address", str(paths.socket), "--namespace", "k8s.io", *args],
                          capture_output=True, text=True)


def import_image(layout: Layout, archive: Path) -> None:
    """Load an OCI archive into the node's containerd (for pods with pull policy Never)."""
    paths = NodePaths(layout.node)
    if procs.owned_process(layout.state, "containerd") is None:
        raise SystemExit(f"[real-node] error: no real node is running in {layout.state} to import {archive.name} "
                         "into (AGENTPROXY_REAL_NODE=1 bin/just cluster-up)")
    t0 = time.monotonic()
    result = _ctr(paths, "images", "import", "--snapshotter", "overlayfs", str(archive))
    if result.returncode != 0:
        raise SystemExit(f"[real-node] error: importing {archive.name} failed: {result.stderr.strip()[-400:]}")
    _log(f"imported {archive.name} in {time.monotonic() - t0:.1f} s")


def up(layout: Layout, deadline: float) -> None:
    """Start the node next to the running control plane; on any failure, undo it all."""
    t0 = time.monotonic()
    archives = [image.build_pause(), image.build_helper()]
    # Agent and proxy images built earlier come along, so that a new cluster has them at once.
    for kind in ("agent", "proxy"):
        archives += sorted(image.images_dir().glob(f"{kind}-*.oci.tar"))[-1:]
    paths = NodePaths(layout.node)
    host.begin(layout.state, paths.root)
    try:
        _start(layout, paths, archives, deadline)
    except BaseException:
        _log("start-up failed; undoing what it changed (logs stay in the cluster's logs/)")
        down(layout)
        raise
    _log(f"ready in {time.monotonic() - t0:.1f} s")


def _write_configs(layout: Layout, paths: NodePaths) -> None:
    for d in (paths.containerd_root, paths.containerd_state, paths.runc_root, paths.cni_conf_dir,
              paths.cni_leases, paths.kubelet_root, paths.pod_logs, paths.volumes):
        d.mkdir(parents=True, exist_ok=True)
    write_serving_cert(layout.pki, "kubelet", NODE_NAME, [NODE_IP, NODE_NAME])
    paths.containerd_config.write_text(containerd_toml(paths, image.PAUSE_REF))
    (paths.cni_conf_dir / "10-agentproxy.conflist").write_text(json.dumps(cni_conflist(paths), indent=1))
    paths.kubelet_config.write_text(json.dumps(kubelet_config(
        paths, layout.pki, layout.port("kubelet"), layout.port("kubelet-healthz")), indent=1))
    paths.kubelet_kubeconfig.write_text(kubeconfig_text(layout, NODE_USER))
    paths.kube_proxy_config.write_text(json.dumps(kube_proxy_config(
        paths, layout.port("kube-proxy-healthz"), layout.port("kube-proxy-metrics")), indent=1))
    paths.kube_proxy_kubeconfig.write_text(kubeconfig_text(layout, PROXY_USER))
    paths.provisioner_config.write_text(json.dumps(provisioner_config(paths)))


def _start(layout: Layout, paths: NodePaths, archives: list[Path], deadline: float) -> None:
    state = layout.state
    timeout = max(deadline - time.monotonic(), 1)
    _write_configs(layout, paths)
    host.add_bridge(NODE_CIDR, routes=[SERVICE_CIDR])
    host.add_cgroup_root()
    _start_relay(layout, paths, deadline, timeout)

    procs.start(state, "containerd", [shutil.which("containerd") or "containerd",
                                      "--config", str(paths.containerd_config)])
    procs.wait("containerd", lambda: _ctr(paths, "version").returncode == 0, state, "containerd", deadline, timeout)
    importing = time.monotonic()
    for archive in archives:
        import_image(layout, archive)
    # Importing is work, not waiting: on a busy machine it took two minutes, which must not be
    # taken from the kubelet's time to register its node.
    deadline += time.monotonic() - importing
    timeout = max(deadline - time.monotonic(), 1)

    procs.start(state, "kubelet", [
        str(layout.binary("kubelet", "kubelet")), f"--config={paths.kubelet_config}",
        f"--kubeconfig={paths.kubelet_kubeconfig}", f"--root-dir={paths.kubelet_root}",
        f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", f"--node-labels={LABEL}=true",
    ])
    procs.wait(f"node {NODE_NAME}", lambda: node_ready(layout, NODE_NAME), state, "kubelet", deadline, timeout)

    procs.start(state, "kube-proxy", [str(layout.binary("kube-proxy", "kube-proxy")),
                                      f"--config={paths.kube_proxy_config}"])
    procs.wait("kube-proxy (the kubernetes Service's rules)", _service_rules, state, "kube-proxy", deadline, timeout)

    for path, body in provisioner_objects(image.HELPER_REF):
        create(layout, path, body)
    procs.start(state, "local-path-provisioner", [
        str(layout.binary("local-path-provisioner", "local-path-provisioner")), "start",
        f"--config={paths.provisioner_config}", f"--kubeconfig={layout.kubeconfig}",
        f"--namespace={PROVISIONER_NAMESPACE}", f"--service-account-name={PROVISIONER_ACCOUNT}",
        f"--configmap-name={PROVISIONER_CONFIGMAP}", f"--helper-image={image.HELPER_REF}",
        f"--provisioner-name={PROVISIONER}",
        # Each volume takes a helper pod and a few seconds, so several go at
        # once (its API client's own limit of 5 requests/s bounds them anyway).
        "--worker-threads=16",
    ])
    time.sleep(0.5)
    procs.wait("local-path-provisioner", lambda: True, state, "local-path-provisioner", deadline, timeout)


def _start_relay(layout: Layout, paths: NodePaths, deadline: float, timeout: float) -> None:
    """The API server on the node's address (see ``relay.py``)."""
    port = layout.port("apiserver")
    procs.start(layout.state, "apiserver-relay", [
        sys.executable, str(HERE / "relay.py"), f"--listen={ADVERTISE_ADDRESS}:{port}", f"--to=127.0.0.1:{port}",
        f"--owner={paths.root}"])

    def accepts() -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((ADVERTISE_ADDRESS, port)) == 0
    procs.wait("API server relay", accepts, layout.state, "apiserver-relay", deadline, timeout)


def _service_rules() -> bool:
    """Whether kube-proxy has written the rules of the ``kubernetes`` Service."""
    out = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S", "KUBE-SERVICES"], capture_output=True, text=True)
    return out.returncode == 0 and f"{KUBERNETES_SERVICE_IP}/32" in out.stdout


def down(layout: Layout, record: dict | None = None) -> None:
    """Stop the node and undo every change it made to the host (as ``record``, by default
    this cluster's host record, says). A no-op for a cluster that never had a real node
    (no root needed then)."""
    record = record or _mine(layout)
    if record is None and not layout.node.exists():
        return
    if os.geteuid() != 0:
        raise SystemExit(f"[real-node] error: taking down the real node of {layout.state} needs root")
    for name in reversed(COMPONENTS):
        procs.stop(layout.state, name)
    # Without its record (deleted by hand) the host changes cannot all be
    # known; what is inside the node's directory still goes.
    left = host.undo(record or {"node_dir": str(layout.node)})
    if left:
        raise SystemExit("[real-node] error: could not remove:\n  " + "\n  ".join(left))
    _log("stopped; the host is as it was")


def print_status(layout: Layout) -> None:
    for name in COMPONENTS:
        proc = procs.owned_process(layout.state, name)
        print(f"{name:24} {f'running (pid {proc.pid})' if proc else 'stopped'}")
    status, node = api(layout, "GET", f"/api/v1/nodes/{NODE_NAME}")
    if status != 200:
        print(f"node {NODE_NAME:19} not registered")
        return
    ready = node_ready(layout, NODE_NAME)
    pods = api(layout, "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")[1].get("items", [])
    info = node.get("status", {}).get("nodeInfo", {})
    print(f"node {NODE_NAME:19} {'Ready' if ready else 'NotReady'} {NODE_IP} kubelet {info.get('kubeletVersion')} "
          f"{info.get('containerRuntimeVersion')} {len(pods)} pods")
