"""A real Kubernetes control plane on loopback, without Docker.

``python testenv/cluster.py up`` starts etcd, kube-apiserver (RBAC and Pod
Security admission on), kube-controller-manager, kube-scheduler and kwok (fake
nodes, pod and volume lifecycles) from the binaries that ``testenv/build.sh``
put in the cache, creates a fake Node and a default StorageClass, waits until
everything is healthy and prints the kubeconfig to use. ``down`` stops exactly
the processes ``up`` started (checked by pid and start time) and removes the
state directory. ``status`` tells whether it runs.

Every component listens on 127.0.0.1; pods get IPs from 127.1.0.0/16, so a test
can bind a real process to a pod's IP and keep all traffic on loopback.

Settings come from the environment: ``AGENTPROXY_CACHE`` (binaries; default
``~/.cache/agentproxy``), ``AGENTPROXY_CLUSTER_DIR`` (state: certificates,
kubeconfig, data, logs and pid files; default ``$AGENTPROXY_CACHE/cluster``)
and ``AGENTPROXY_CLUSTER_PORT_BASE`` (default 32300; ports base+0..base+9).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pki import file_stem, write_pki  # noqa: E402  (a sibling module, run as a script)

HERE = Path(__file__).resolve().parent
POD_CIDR = "127.1.0.0/16"
# Service IPs are only allocated, never contacted (there is no kube-proxy); a
# loopback range keeps even the allocation off private and public networks.
SERVICE_CIDR = "127.2.0.0/16"
NODE_NAME = "kwok-node-0"
START_TIMEOUT = float(os.environ.get("AGENTPROXY_CLUSTER_START_TIMEOUT", "120"))


def _versions() -> dict[str, str]:
    values = {}
    for line in (HERE / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


@dataclass(frozen=True)
class Layout:
    """Where binaries, state and ports are."""

    cache: Path
    state: Path
    port_base: int

    @classmethod
    def from_env(cls) -> "Layout":
        cache = Path(os.environ.get("AGENTPROXY_CACHE") or
                     Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentproxy")
        state = Path(os.environ.get("AGENTPROXY_CLUSTER_DIR") or cache / "cluster")
        return cls(cache, state, int(os.environ.get("AGENTPROXY_CLUSTER_PORT_BASE", "32300")))

    def binary(self, component: str, name: str) -> Path:
        version = _versions()[f"{component.upper()}_VERSION"]
        return self.cache / "bin" / f"{component}-{version}" / name

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.port('apiserver')}"

    def port(self, name: str) -> int:
        offsets = {"etcd": 0, "etcd-peer": 1, "apiserver": 2, "controller-manager": 3,
                   "scheduler": 4, "kwok": 5}
        return self.port_base + offsets[name]


def _log(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------

def _pidfile(layout: Layout, name: str) -> Path:
    return layout.state / "run" / f"{name}.pid"


def _start(layout: Layout, name: str, argv: list[str]) -> None:
    """Start one component detached from us, logging to its own file."""
    logs = layout.state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=layout.state)
    created = psutil.Process(proc.pid).create_time()
    pidfile = _pidfile(layout, name)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(json.dumps({"pid": proc.pid, "create_time": created, "exe": argv[0], "argv": argv}))


def _owned_process(layout: Layout, name: str) -> psutil.Process | None:
    """The live process a pid file names, only if it is still the one we started:
    a pid reused by an unrelated process is never trusted."""
    try:
        record = json.loads(_pidfile(layout, name).read_text())
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - record["create_time"]) > 0.01:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmd = proc.cmdline()
        # Just after a spawn the command line can read as empty for a moment;
        # the create time alone already ties the pid to the process we started.
        if cmd and cmd[0] != record["exe"]:
            return None
        return proc
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


def _stop_all(layout: Layout, grace: float = 10.0) -> None:
    # Reverse start order: clients before the API server, the API server before etcd.
    for name in reversed(COMPONENTS):
        proc = _owned_process(layout, name)
        if proc is not None:
            _log(f"stopping {name} (pid {proc.pid})")
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        _pidfile(layout, name).unlink(missing_ok=True)


# --- health ------------------------------------------------------------------

def _admin_context(layout: Layout) -> ssl.SSLContext:
    pki = layout.state / "pki"
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx


def _insecure_context() -> ssl.SSLContext:
    # The controller-manager and scheduler serve /healthz with self-signed
    # certificates of their own; only liveness is checked there.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _get(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""


def _api(layout: Layout, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(layout.apiserver_url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=_admin_context(layout), timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _wait(what: str, check, layout: Layout, name: str | None, deadline: float) -> None:
    while time.monotonic() < deadline:
        if check():
            _log(f"{what}: healthy")
            return
        if name is not None and _owned_process(layout, name) is None:
            raise SystemExit(f"[cluster] error: {name} exited during start-up; its log follows\n"
                             f"{_tail(layout.state / 'logs' / f'{name}.log')}")
        time.sleep(0.25)
    log = f"\n{_tail(layout.state / 'logs' / f'{name}.log')}" if name else ""
    raise SystemExit(f"[cluster] error: {what} did not become healthy within {START_TIMEOUT:.0f} s{log}")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _healthy(layout: Layout) -> bool:
    status, _ = _get(layout.apiserver_url + "/readyz", _admin_context(layout))
    return status == 200 and all(_owned_process(layout, n) for n in COMPONENTS)


# --- start-up ----------------------------------------------------------------

def _kubeconfig_text(layout: Layout, user: str) -> str:
    pki = layout.state / "pki"
    return f"""apiVersion: v1
kind: Config
clusters:
- name: agentproxy-test
  cluster:
    server: {layout.apiserver_url}
    certificate-authority: {pki / 'ca.crt'}
users:
- name: {user}
  user:
    client-certificate: {pki / f'{file_stem(user)}.crt'}
    client-key: {pki / f'{file_stem(user)}.key'}
contexts:
- name: agentproxy-test
  context: {{cluster: agentproxy-test, user: {user}}}
current-context: agentproxy-test
"""


def _kwok_config(layout: Layout) -> Path:
    """kwok's standalone binary has no stages built in: concatenate the upstream
    defaults that the build step copied from the kwok module."""
    stages = layout.binary("kwok", "kwok").parent / "stages"
    files = [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
        # Fails the container of a pod labelled for it (failure reasons in the e2e suite).
        "pod/chaos/pod-container-running-failed.yaml",
        "volume/fast/pv-bind.yaml",
        "volume/fast/pv-delete.yaml",
        "volume/fast/pvc-provision.yaml",
        "volume/fast/pvc-delete.yaml",
    ]
    docs = [(stages / f).read_text() for f in files]
    path = layout.state / "kwok.yaml"
    path.write_text("\n---\n".join(d.strip() for d in docs) + "\n")
    return path


def _node() -> dict:
    # Room for benchmarks with a thousand agents (100m CPU, 256Mi each).
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "5000", "ephemeral-storage": "10Ti"}
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
    """Start the control plane, or report the one already running."""
    if layout.state.exists() and (layout.state / "pki" / "admin.crt").exists() and _healthy(layout):
        _log("already running")
        print(f"export KUBECONFIG={layout.kubeconfig}")
        return
    missing = [str(p) for p in (layout.binary("kubernetes", "kube-apiserver"), layout.binary("etcd", "etcd"),
                                layout.binary("kwok", "kwok")) if not p.exists()]
    if missing:
        raise SystemExit(f"[cluster] error: not built yet: {', '.join(missing)}; run testenv/build.sh first")
    _stop_all(layout)  # leftovers of a half-started or crashed run
    shutil.rmtree(layout.state, ignore_errors=True)
    layout.state.mkdir(parents=True)
    t0 = time.monotonic()
    deadline = t0 + START_TIMEOUT
    pki = layout.state / "pki"
    write_pki(pki, users={"admin": "system:masters", "system:kube-controller-manager": None,
                          "system:kube-scheduler": None})
    layout.kubeconfig.write_text(_kubeconfig_text(layout, "admin"))
    for user, short in (("system:kube-controller-manager", "controller-manager"),
                        ("system:kube-scheduler", "scheduler")):
        (layout.state / f"{short}.kubeconfig").write_text(_kubeconfig_text(layout, user))

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
        f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
        f"--secure-port={layout.port('apiserver')}", f"--cert-dir={pki}",
        f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=RBAC", "--allow-privileged=true", "--profiling=false",
        # PodSecurity is among the default admission plugins; naming it makes
        # the intent explicit and fails loudly if a version ever drops it.
        "--enable-admission-plugins=PodSecurity,DefaultStorageClass,ServiceAccount,ResourceQuota",
    ])
    _wait("kube-apiserver", lambda: _get(layout.apiserver_url + "/readyz", _admin_context(layout))[0] == 200,
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
    ])
    _start(layout, "kube-scheduler", [
        str(layout.binary("kubernetes", "kube-scheduler")),
        f"--kubeconfig={layout.state / 'scheduler.kubeconfig'}",
        f"--authentication-kubeconfig={layout.state / 'scheduler.kubeconfig'}",
        f"--authorization-kubeconfig={layout.state / 'scheduler.kubeconfig'}",
        "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={layout.port('scheduler')}",
        "--profiling=false",
    ])
    _start(layout, "kwok", [
        str(layout.binary("kwok", "kwok")), f"--kubeconfig={layout.kubeconfig}",
        f"--config={_kwok_config(layout)}", "--manage-all-nodes=true", f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1", "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{layout.port('kwok')}",
    ])
    for name in ("controller-manager", "scheduler"):
        url = f"https://127.0.0.1:{layout.port(name)}/healthz"
        _wait(f"kube-{name}", lambda url=url: _get(url, _insecure_context())[0] == 200, layout,
              f"kube-{name}", deadline)

    _create(layout, "/apis/storage.k8s.io/v1/storageclasses", _storage_class(layout))
    _create(layout, "/api/v1/nodes", _node())
    _wait("kwok node", lambda: _node_ready(layout), layout, "kwok", deadline)
    _wait("default service account", lambda: _api(layout, "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
          layout, "kube-controller-manager", deadline)
    _log(f"control plane up in {time.monotonic() - t0:.1f} s; logs in {layout.state / 'logs'}")
    print(f"export KUBECONFIG={layout.kubeconfig}")


def _storage_class(layout: Layout) -> dict:
    """kwok's fake provisioner's default StorageClass, from the kwok module."""
    import yaml  # only needed here; PyYAML comes with agentproxy's dependencies

    path = layout.binary("kwok", "kwok").parent / "stages" / "volume" / "fast" / "storage-class.yaml"
    return yaml.safe_load(path.read_text())


def _create(layout: Layout, path: str, body: dict) -> None:
    status, reply = _api(layout, "POST", path, body)
    if status not in (200, 201, 409):
        raise SystemExit(f"[cluster] error: creating {body['kind']} failed ({status}): {reply.get('message')}")


def _node_ready(layout: Layout) -> bool:
    status, node = _api(layout, "GET", f"/api/v1/nodes/{NODE_NAME}")
    conditions = node.get("status", {}).get("conditions", []) if status == 200 else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def restart(layout: Layout, name: str) -> None:
    """Kill one component and start it again with the same arguments (for tests
    of what clients do while, say, the API server is down)."""
    record = json.loads(_pidfile(layout, name).read_text())
    proc = _owned_process(layout, name)
    if proc is not None:
        # Killed, not stopped: clients must cope with a server that vanishes.
        proc.kill()
        proc.wait(15)
    _start(layout, name, record["argv"])
    if name == "kube-apiserver":
        _wait(name, lambda: _get(layout.apiserver_url + "/readyz", _admin_context(layout))[0] == 200,
              layout, name, time.monotonic() + START_TIMEOUT)


def down(layout: Layout) -> None:
    """Stop what ``up`` started and remove its state."""
    _stop_all(layout)
    shutil.rmtree(layout.state, ignore_errors=True)
    _log("stopped")


def status(layout: Layout) -> int:
    """0 when the control plane is up and healthy, 1 otherwise."""
    for name in COMPONENTS:
        proc = _owned_process(layout, name)
        print(f"{name:24} {'running (pid %d)' % proc.pid if proc else 'stopped'}")
    ok = (layout.state / "pki" / "admin.crt").exists() and _healthy(layout)
    print(f"KUBECONFIG={layout.kubeconfig}" if ok else "not healthy")
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("up", "down", "status", "restart"))
    parser.add_argument("component", nargs="?", choices=COMPONENTS, help="for restart")
    args = parser.parse_args()
    layout = Layout.from_env()
    if args.action == "restart":
        if not args.component:
            parser.error("restart needs a component")
        restart(layout, args.component)
    elif args.action == "up":
        up(layout)
    elif args.action == "down":
        down(layout)
    else:
        return status(layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
