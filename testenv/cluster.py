"""A real Kubernetes control plane on loopback, without Docker.

``python -m testenv.cluster up`` starts etcd, kube-apiserver (RBAC and Pod
Security admission on), kube-controller-manager, kube-scheduler and kwok (fake
nodes, pod and volume lifecycles) from the binaries that ``testenv/build.sh``
put in the cache, creates a fake Node and a default StorageClass, waits until
everything is healthy and prints the kubeconfig to use. ``down`` stops exactly
the processes ``up`` started (checked by pid and start time) and removes the
state directory. ``status`` tells whether it runs. ``load-image PATH`` imports an
OCI archive of ``image.py`` into the real node, when one runs.

Every component listens on 127.0.0.1; pods get IPs from 127.1.0.0/16, so a test
can bind a real process to a pod's IP and keep all traffic on loopback.

With ``AGENTPROXY_REAL_NODE=1`` (root, Linux) ``up`` adds one real node: a
kubelet with containerd on a bridge in 198.18.0.0/16 (see ``realnode.py``);
``down`` removes it and everything it changed on the host, whatever state it
was left in.

Settings come from the environment (see ``layout.py``): ``AGENTPROXY_CACHE``
(binaries; default ``~/.cache/agentproxy``), ``AGENTPROXY_CLUSTER_DIR`` (state:
certificates, kubeconfig, data, logs and pid files; default
``$AGENTPROXY_CACHE/cluster``), ``AGENTPROXY_CLUSTER_PORT_BASE`` (default
32300; ports base+0..base+9) and ``AGENTPROXY_REAL_NODE``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from . import procs, realnode
from .apiclient import admin_context, api as _api, create as _create, insecure_context, kubeconfig_text, node_ready
from .layout import Layout, real_node_requested
from .pki import write_pki
from .procs import http_get as _get, log as _log, owned_process

POD_CIDR = "127.1.0.0/16"
# Without a real node, Service IPs are only allocated, never contacted (there is
# no kube-proxy); a loopback range keeps even the allocation off private and
# public networks. With one, they come from the node's range (realnode.py).
SERVICE_CIDR = "127.2.0.0/16"
KWOK_STAGES = Path(__file__).resolve().parent / "kwok"
"""kwok stages of the test cluster's own (kwok's upstream ones come from its module)."""

NODE_NAME = "kwok-node-0"
START_TIMEOUT = float(os.environ.get("AGENTPROXY_CLUSTER_START_TIMEOUT", "120"))

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _start(layout: Layout, name: str, argv: list[str]) -> None:
    procs.start(layout.state, name, argv)


def _owned_process(layout: Layout, name: str):
    return owned_process(layout.state, name)


def _stop_all(layout: Layout, grace: float = 10.0) -> None:
    # Reverse start order: clients before the API server, the API server before etcd.
    for name in reversed(COMPONENTS):
        procs.stop(layout.state, name, grace)


# --- health ------------------------------------------------------------------

def _wait(what: str, check, layout: Layout, name: str | None, deadline: float) -> None:
    procs.wait(what, check, layout.state, name, deadline, START_TIMEOUT)


def _control_plane_healthy(layout: Layout) -> bool:
    status, _ = _get(layout.apiserver_url + "/readyz", admin_context(layout))
    return status == 200 and all(_owned_process(layout, n) for n in COMPONENTS)


def _healthy(layout: Layout) -> bool:
    return _control_plane_healthy(layout) and (not realnode.present(layout) or realnode.healthy(layout))


# --- start-up ----------------------------------------------------------------

def _kwok_config(layout: Layout) -> Path:
    """kwok's standalone binary has no stages built in: concatenate the upstream
    defaults that the build step copied from the kwok module, and ours."""
    stages = layout.binary("kwok", "kwok").parent / "stages"
    files = [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
        # Fails the container of a pod labelled for it (failure reasons in the e2e suite).
        "pod/chaos/pod-container-running-failed.yaml",
        # Deletes a released volume, as an external provisioner does.
        "volume/fast/pv-delete.yaml",
    ]
    # Provisioning is ours (see the file): kwok's own stages bind claims behind the PV
    # controller's back, which made claims Lost now and then.
    docs = [(stages / f).read_text() for f in files] + [(KWOK_STAGES / "volume-provision.yaml").read_text()]
    path = layout.state / "kwok.yaml"
    path.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    return path


def _node() -> dict:
    # Room for the scale benchmark's 10,000 agents (100m CPU, 256Mi each) and more.
    capacity = {"cpu": "4000", "memory": "16Ti", "pods": "20000", "ephemeral-storage": "40Ti"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "kwok"},
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


def up(layout: Layout) -> None:
    """Start the control plane (with a real node when asked), or report the one already running."""
    real = real_node_requested()
    if layout.state.exists() and (layout.state / "pki" / "admin.crt").exists() and _control_plane_healthy(layout):
        if real != realnode.present(layout):
            raise SystemExit(f"[cluster] error: a control plane {'without' if real else 'with'} a real node is "
                             f"running in {layout.state}; take it down first (cluster-down)")
        if not _healthy(layout):
            raise SystemExit("[cluster] error: the real node is not healthy (see cluster-status); "
                             "cluster-down, then cluster-up")
        _log("already running")
        print(f"export KUBECONFIG={layout.kubeconfig}")
        return
    binaries = [layout.binary("kubernetes", "kube-apiserver"), layout.binary("etcd", "etcd"),
                layout.binary("kwok", "kwok")] + (realnode.binaries(layout) if real else [])
    missing = [str(p) for p in binaries if not p.exists()]
    if missing:
        raise SystemExit(f"[cluster] error: not built yet: {', '.join(missing)}; run testenv/build.sh first")
    if real:
        realnode.preflight(layout)  # fails before anything on the host changes
    realnode.down(layout)  # leftovers of a crashed real node of this cluster, if any
    _stop_all(layout)  # leftovers of a half-started or crashed run
    shutil.rmtree(layout.state, ignore_errors=True)
    layout.state.mkdir(parents=True)
    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT
    pki = layout.state / "pki"
    users = {"admin": "system:masters", "system:kube-controller-manager": None, "system:kube-scheduler": None}
    write_pki(pki, users={**users, **(realnode.PKI_USERS if real else {})})
    layout.kubeconfig.write_text(kubeconfig_text(layout, "admin"))
    for user, short in (("system:kube-controller-manager", "controller-manager"),
                        ("system:kube-scheduler", "scheduler")):
        (layout.state / f"{short}.kubeconfig").write_text(kubeconfig_text(layout, user))

    etcd_url = f"http://127.0.0.1:{layout.port('etcd')}"
    peer_url = f"http://127.0.0.1:{layout.port('etcd-peer')}"
    _start(layout, "etcd", [
        str(layout.binary("etcd", "etcd")), "--name=agentproxy-test", f"--data-dir={layout.state / 'etcd'}",
        f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=agentproxy-test={peer_url}", "--unsafe-no-fsync=true", "--log-level=warn",
    ])
    _wait("etcd", lambda: _get(f"{etcd_url}/health")[0] == 200, layout, "etcd", deadline)

    _start(layout, "kube-apiserver", [
        str(layout.binary("kubernetes", "kube-apiserver")),
        f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
        f"--advertise-address={realnode.ADVERTISE_ADDRESS if real else '127.0.0.1'}",
        f"--secure-port={layout.port('apiserver')}", f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={realnode.SERVICE_CIDR if real else SERVICE_CIDR}",
        "--allow-privileged=true", "--profiling=false",
        # PodSecurity is among the default admission plugins; naming it makes
        # the intent explicit and fails loudly if a version ever drops it.
        "--enable-admission-plugins=" + ",".join(
            ["PodSecurity", "DefaultStorageClass", "ServiceAccount", "ResourceQuota"]
            + (realnode.ADMISSION_PLUGINS if real else [])),
    ] + (realnode.apiserver_args(layout) if real else ["--authorization-mode=RBAC"]))
    _wait("kube-apiserver", lambda: _get(layout.apiserver_url + "/readyz", admin_context(layout))[0] == 200,
          layout, "kube-apiserver", deadline)

    _start(layout, "kube-controller-manager", [
        str(layout.binary("kubernetes", "kube-controller-manager")),
        f"--kubeconfig={layout.state / 'controller-manager.kubeconfig'}",
        f"--authentication-kubeconfig={layout.state / 'controller-manager.kubeconfig'}",
        f"--authorization-kubeconfig={layout.state / 'controller-manager.kubeconfig'}",
        "--leader-elect=false", "--bind-address=127.0.0.1",
        f"--secure-port={layout.port('controller-manager')}",
        f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=true", "--profiling=false",
        # The defaults (20 requests a second, 5 StatefulSets at once) make the controllers,
        # not agentproxy, the limit of the scale benchmark: 1,000 agents' PVCs, pods and
        # endpoints took them minutes. Clusters run at this size raise them too.
        "--kube-api-qps=200", "--kube-api-burst=400", "--concurrent-statefulset-syncs=20",
    ])
    _start(layout, "kube-scheduler", [
        str(layout.binary("kubernetes", "kube-scheduler")),
        f"--kubeconfig={layout.state / 'scheduler.kubeconfig'}",
        f"--authentication-kubeconfig={layout.state / 'scheduler.kubeconfig'}",
        f"--authorization-kubeconfig={layout.state / 'scheduler.kubeconfig'}",
        "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={layout.port('scheduler')}",
        "--profiling=false", "--kube-api-qps=200", "--kube-api-burst=400",
    ])
    _start(layout, "kwok", [
        str(layout.binary("kwok", "kwok")), f"--kubeconfig={layout.kubeconfig}",
        f"--config={_kwok_config(layout)}", f"--cidr={POD_CIDR}",
        # Next to a real node, kwok keeps to the fake nodes (annotated as such).
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" if real else "--manage-all-nodes=true",
        "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{layout.port('kwok')}",
    ])
    for name in ("controller-manager", "scheduler"):
        url = f"https://127.0.0.1:{layout.port(name)}/healthz"
        _wait(f"kube-{name}", lambda url=url: _get(url, insecure_context())[0] == 200, layout,
              f"kube-{name}", deadline)

    _create(layout, "/apis/storage.k8s.io/v1/storageclasses", _storage_class(layout))
    _create(layout, "/api/v1/nodes", _node())
    _wait("kwok node", lambda: node_ready(layout, NODE_NAME), layout, "kwok", deadline)
    _wait("default service account", lambda: _api(layout, "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
          layout, "kube-controller-manager", deadline)
    _log(f"control plane up in {time.monotonic() - t0:.1f} s; logs in {layout.state / 'logs'}")
    if real:
        realnode.up(layout, time.monotonic() + START_TIMEOUT)
        _log(f"control plane and real node up in {time.monotonic() - t0:.1f} s")
    print(f"export KUBECONFIG={layout.kubeconfig}")


def _storage_class(layout: Layout) -> dict:
    """kwok's fake provisioner's default StorageClass, from the kwok module."""
    import yaml  # only needed here; PyYAML comes with agentproxy's dependencies

    path = layout.binary("kwok", "kwok").parent / "stages" / "volume" / "fast" / "storage-class.yaml"
    return yaml.safe_load(path.read_text())


def kill(layout: Layout, name: str) -> None:
    """SIGKILL one component, keeping its record so that ``start`` can bring it back."""
    proc = _owned_process(layout, name)
    if proc is not None:
        proc.kill()
        procs.exited(proc, 15)


def start_again(layout: Layout, name: str) -> None:
    """Start a component again with the arguments it was started with."""
    if _owned_process(layout, name) is not None:
        return
    record = procs.record(layout.state, name)
    procs.start(layout.state, name, record["argv"], record.get("env"))
    if name == "kube-apiserver":
        _wait(name, lambda: _get(layout.apiserver_url + "/readyz", admin_context(layout))[0] == 200,
              layout, name, time.monotonic() + START_TIMEOUT)


def restart(layout: Layout, name: str) -> None:
    """Kill one component and start it again with the same arguments (for tests
    of what clients do while, say, the API server or the kubelet is down)."""
    # Killed, not stopped: clients must cope with a server that vanishes.
    kill(layout, name)
    start_again(layout, name)


def down(layout: Layout) -> None:
    """Stop what ``up`` started and remove its state (and the real node's
    changes to the host, whether it was asked for now or not)."""
    realnode.down(layout)
    _stop_all(layout)
    shutil.rmtree(layout.state, ignore_errors=True)
    _log("stopped")


def status(layout: Layout) -> int:
    """0 when the control plane is up and healthy, 1 otherwise."""
    for name in COMPONENTS:
        proc = _owned_process(layout, name)
        print(f"{name:24} {f'running (pid {proc.pid})' if proc else 'stopped'}")
    if realnode.present(layout):
        realnode.print_status(layout)
    ok = (layout.state / "pki" / "admin.crt").exists() and _healthy(layout)
    print(f"KUBECONFIG={layout.kubeconfig}" if ok else "not healthy")
    return 0 if ok else 1


def load_image(layout: Layout, archive: Path) -> None:
    """Import an OCI archive (``image.py``'s output) into the real node, when one runs; the
    node imports every cached image as it starts, so without one there is nothing to do."""
    if procs.owned_process(layout.state, "containerd") is None:
        _log(f"no real node runs in {layout.state}; `AGENTPROXY_REAL_NODE=1 bin/just cluster-up` imports {archive.name}")
        return
    realnode.import_image(layout, archive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status", "restart", "kill", "start", "load-image"))
    parser.add_argument("component", nargs="?",
                        help="for restart, kill (SIGKILL) and start (again, after kill): one of "
                             + ", ".join(COMPONENTS + realnode.COMPONENTS) + "; for load-image: an OCI archive")
    args = parser.parse_args()
    layout = Layout.from_env()
    if args.action == "load-image":
        if not args.component:
            parser.error("load-image needs the path of an OCI archive")
        load_image(layout, Path(args.component))
    elif args.action in ("restart", "kill", "start"):
        if args.component not in COMPONENTS + realnode.COMPONENTS:
            parser.error(f"{args.action} needs a component, one of {', '.join(COMPONENTS + realnode.COMPONENTS)}")
        {"restart": restart, "kill": kill, "start": start_again}[args.action](layout, args.component)
    elif args.action == "up":
        up(layout)
    elif args.action == "down":
        down(layout)
    else:
        return status(layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
