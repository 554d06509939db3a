"""What the real node changes on the host, and undoing all of it.

Before it changes anything, ``begin`` writes a record (``/run/agentproxy-real-node.json``)
of what it is about to touch and how it was: kernel settings the kubelet sets,
paths outside the node's state directory that containerd, CNI or the kubelet
may create, and the iptables rules. ``undo`` uses the record to bring the host
back, whatever state a run left it in (killed half-way, crashed, interrupted):
processes, mounts, the bridge and its veths, pod cgroups, iptables rules,
kernel settings and paths. ``snapshot`` describes all of it, so that a test
can compare the host before ``up`` and after ``down``.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from .nodeconfig import BRIDGE, CGROUP_ROOT, NETWORK
from .procs import exited

RECORD = Path("/run/agentproxy-real-node.json")
CGROUPS = Path("/sys/fs/cgroup")
# Kernel settings the kubelet sets at start (vm.*, kernel.*), those a CNI
# plugin could flip (forwarding) and those kube-proxy may set (its configuration
# asks it to leave them alone).
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
           "net.ipv6.conf.all.forwarding", "net.ipv4.conf.all.route_localnet", "net.netfilter.nf_conntrack_max",
           "net.netfilter.nf_conntrack_tcp_timeout_established", "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
           "net.netfilter.nf_conntrack_tcp_be_liberal", "net.bridge.bridge-nf-call-iptables")
# Paths outside the node's state that its parts create: shim sockets, CNI's
# result cache, the kubelet's log links and device-plugin socket, libmount's
# table, and defaults nothing should use.
OUTSIDE = ("/run/containerd", "/run/mount", "/var/lib/cni", "/var/log/containers", "/var/log/pods", "/var/lib/kubelet",
           "/var/lib/containerd", "/opt/containerd", "/etc/cni", "/var/run/netns")
PROGRAMS = {"containerd", "containerd-shim-runc-v2", "containerd-shim", "runc", "kubelet", "kube-proxy",
            "local-path-provisioner"}
SCRIPTS = {"relay.py"}
"""The node's programs that run under Python (the API server's relay)."""
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
# Distribution packages the node runs, by a file each one installs.
PACKAGES = {"/usr/bin/containerd": "containerd", "/usr/sbin/runc": "runc",
            "/usr/lib/cni/bridge": "containernetworking-plugins"}


def _log(message: str) -> None:
    print(f"[real-node] {message}", flush=True, file=sys.stderr)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


# --- before anything changes ------------------------------------------------------

def preflight() -> None:
    """Fail with one line when this host cannot run the node; install the
    distribution packages it needs when they are missing."""
    if platform.system() != "Linux":
        raise SystemExit(f"[real-node] error: a real node needs Linux (this is {platform.system()}); "
                         "unset AGENTPROXY_REAL_NODE")
    if os.geteuid() != 0:
        raise SystemExit("[real-node] error: a real node needs root (it runs containerd and a kubelet and "
                         "adds a bridge); run as root or unset AGENTPROXY_REAL_NODE")
    if not (CGROUPS / "memory").is_dir() and not (CGROUPS / "cgroup.controllers").exists():
        raise SystemExit("[real-node] error: no cgroup hierarchy with the memory controller under /sys/fs/cgroup")
    missing = sorted({pkg for path, pkg in PACKAGES.items() if not Path(path).exists()})
    if missing:
        if not shutil.which("apt-get"):
            raise SystemExit(f"[real-node] error: missing {', '.join(missing)} and no apt-get to install "
                             "them; install them with the system's package manager")
        _log(f"installing {' '.join(missing)} (apt-get)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        argv = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "--no-install-recommends", *missing]
        if subprocess.run(argv, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            result = subprocess.run(argv, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"[real-node] error: apt-get install {' '.join(missing)} failed: "
                                 f"{result.stderr.strip()[-400:]}")


def read_record() -> dict | None:
    try:
        return json.loads(RECORD.read_text())
    except (OSError, ValueError):
        return None


def begin(owner: Path, node_dir: Path) -> dict:
    """Record the host as it is, before the node changes it. One real node per host: the
    bridge, the pod cgroups and the paths outside its state are the host's own."""
    if RECORD.exists():
        try:
            other = json.loads(RECORD.read_text()).get("owner")
        except (OSError, ValueError):
            other = None
        if other and other != str(owner) and Path(other).exists():
            raise SystemExit(f"[real-node] error: the cluster in {other} has a real node on this host; "
                             f"stop it first (AGENTPROXY_CLUSTER_DIR={other} python -m testenv.cluster down)")
    record = {
        "owner": str(owner), "node_dir": str(node_dir), "bridge": BRIDGE, "cgroup_root": CGROUP_ROOT,
        "sysctls": {name: _sysctl(name) for name in SYSCTLS if _sysctl(name) is not None},
        "absent": [p for p in OUTSIDE if not os.path.lexists(p)],
        "iptables": _iptables_rules(),
    }
    tmp = RECORD.with_name(RECORD.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(RECORD)
    return record


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def _iptables_rules() -> dict[str, dict[str, list[str]]]:
    rules: dict[str, dict[str, list[str]]] = {}
    for cmd in IPTABLES:
        if shutil.which(cmd):
            rules[cmd] = {}
            for table in TABLES:
                out = _run([cmd, "-w", "5", "-t", table, "-S"], check=False)
                rules[cmd][table] = out.stdout.splitlines() if out.returncode == 0 else []
    return rules


# --- changes ---------------------------------------------------------------------

def add_bridge(cidr: str, routes: Sequence[str] = ()) -> None:
    """The node's bridge, holding the node IP (this kernel kind has no dummy
    interfaces, and the kubelet refuses a loopback node IP), and routes of
    ``routes`` to it (Service cluster IPs: from the host they go to the bridge,
    never to the default route). Routes go with the bridge when it is deleted."""
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    if cidr.split("/")[0] not in _run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout:
        _run(["ip", "addr", "add", cidr, "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])
    for route in routes:
        _run(["ip", "route", "replace", route, "dev", BRIDGE])


def hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones, the unified one)."""
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            found.append(Path(fields[1]))
    return found


def add_cgroup_root() -> None:
    """The parent of all pod cgroups, in every hierarchy (the kubelet wants it to exist)."""
    for h in hierarchies():
        path = h / CGROUP_ROOT
        path.mkdir(exist_ok=True)
        # A new cpuset cgroup starts with no CPUs or memory nodes: give it the parent's.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (h / name).exists() and not (path / name).read_text().strip():
                (path / name).write_text((h / name).read_text())


# --- undo ------------------------------------------------------------------------

def ours(proc: psutil.Process, node_dir: str) -> bool:
    """A process of the node: one of its programs whose command line names the
    node's state (containerd, shims, kubelet, provisioner), or anything in one
    of its pod cgroups."""
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmd = proc.cmdline()
        if cmd and os.path.basename(cmd[0]) in PROGRAMS and any(node_dir in arg for arg in cmd):
            return True
        if len(cmd) > 1 and os.path.basename(cmd[1]) in SCRIPTS and any(node_dir in arg for arg in cmd):
            return True
        return any(f"/{CGROUP_ROOT}/" in line or line.endswith(f"/{CGROUP_ROOT}")
                   for line in Path(f"/proc/{proc.pid}/cgroup").read_text().splitlines())
    except (psutil.Error, OSError):
        return False


def node_processes(node_dir: str) -> list[psutil.Process]:
    """The processes of the node in ``node_dir`` (see :func:`ours`)."""
    me = os.getpid()
    return [p for p in psutil.process_iter() if p.pid != me and ours(p, node_dir)]


def kill_processes(node_dir: str, timeout: float = 20.0) -> list[str]:
    """SIGKILL every process of the node until none is left; what survived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = node_processes(node_dir)
        if not procs:
            return []
        for p in procs:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        for p in procs:
            exited(p, 2)
    return [f"process {p.pid} {' '.join(p.cmdline())[:120]}" for p in node_processes(node_dir)]


def _mountpoints() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # The mount point is the fifth field; spaces and the like are octal escapes.
        points.append(line.split()[4].encode().decode("unicode_escape"))
    return points


def node_mounts(node_dir: str) -> list[str]:
    prefixes = (node_dir.rstrip("/") + "/", "/run/containerd/", "/var/run/netns/")
    return [m for m in _mountpoints() if m == node_dir or m.startswith(prefixes)]


def unmount_all(node_dir: str) -> list[str]:
    """Unmount everything under the node's state, deepest first, stacked mounts too."""
    for _ in range(20):
        mounts = node_mounts(node_dir)
        if not mounts:
            return []
        for m in sorted(mounts, key=lambda m: m.count("/"), reverse=True):
            if _run(["umount", m], check=False).returncode != 0:
                _run(["umount", "-l", m], check=False)
    return [f"mount {m}" for m in node_mounts(node_dir)]


def remove_network() -> list[str]:
    """The bridge and any veth still attached to it."""
    ports = _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout.splitlines()
    for line in ports:
        name = line.split(":")[1].strip().split("@")[0]
        _run(["ip", "link", "del", name], check=False)
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        _run(["ip", "link", "del", BRIDGE], check=False)
    return [f"link {BRIDGE}"] if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0 else []


def remove_cgroups() -> list[str]:
    left = []
    for h in hierarchies():
        top = h / CGROUP_ROOT
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            try:
                os.rmdir(dirpath)
            except OSError as exc:
                left.append(f"cgroup {dirpath}: {exc.strerror}")
    return left


def restore_iptables(before: dict[str, dict[str, list[str]]]) -> list[str]:
    """Delete the rules and chains added since ``before``."""
    left = []
    for cmd, tables in _iptables_rules().items():
        for table, rules in tables.items():
            old = set(before.get(cmd, {}).get(table, []))
            new = [r for r in rules if r not in old]
            for rule in (r for r in new if r.startswith("-A ")):
                # -S quotes what needs it (comments with spaces): split as a shell would.
                _run([cmd, "-w", "5", "-t", table, "-D", *shlex.split(rule[3:])], check=False)
            for chain in (r.split()[1] for r in new if r.startswith("-N ")):
                _run([cmd, "-w", "5", "-t", table, "-F", chain], check=False)
                _run([cmd, "-w", "5", "-t", table, "-X", chain], check=False)
            still = [r for r in _iptables_rules().get(cmd, {}).get(table, []) if r not in old]
            left += [f"{cmd} -t {table} {r}" for r in still]
    return left


def restore_sysctls(values: dict[str, str]) -> list[str]:
    left = []
    for name, value in values.items():
        if _sysctl(name) != value:
            try:
                Path("/proc/sys", *name.split(".")).write_text(value)
            except OSError as exc:
                left.append(f"sysctl {name}: {exc.strerror}")
    return left


def _sandboxes(node_dir: str) -> set[str]:
    """Ids of the pod sandboxes containerd made (CNI names its cache entries after them)."""
    ids: set[str] = set()
    for top in ("containerd/root", "containerd/state"):
        sandboxes = Path(node_dir, top, "io.containerd.grpc.v1.cri", "sandboxes")
        if sandboxes.is_dir():
            ids.update(p.name for p in sandboxes.iterdir())
    return ids


def remove_paths(absent: list[str], node_dir: str) -> list[str]:
    """Paths that did not exist before; where one did, only this node's entries in it."""
    left = []
    sandboxes = _sandboxes(node_dir)
    for path in OUTSIDE:
        if path in absent and os.path.islink(path):
            os.unlink(path)
        elif path in absent and os.path.exists(path):
            shutil.rmtree(path, ignore_errors=True)
        elif path == "/var/lib/cni" and os.path.isdir(path):
            for entry in Path(path).rglob("*"):
                if entry.is_file() and (entry.name.startswith(f"{NETWORK}-")
                                        or any(f"-{sid}-" in entry.name for sid in sandboxes)):
                    entry.unlink(missing_ok=True)
        if path in absent and os.path.lexists(path):
            left.append(f"path {path}")
    return left


def undo(record: dict) -> list[str]:
    """Bring the host back to what ``record`` saw; the list of what could not be."""
    node_dir = record["node_dir"]
    left = kill_processes(node_dir)
    left += unmount_all(node_dir)
    left += remove_network()
    left += remove_cgroups()
    left += restore_iptables(record.get("iptables", {}))
    left += restore_sysctls(record.get("sysctls", {}))
    left += remove_paths(record.get("absent", []), node_dir)
    if not node_mounts(node_dir):
        shutil.rmtree(node_dir, ignore_errors=True)
    else:
        left.append(f"{node_dir} kept: something is still mounted under it")
    if not left:
        RECORD.unlink(missing_ok=True)
    return left


def snapshot(node_dir: str) -> dict:
    """What the node could leave on the host, for a before/after comparison."""
    links = _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines()
    return {
        "processes": sorted(" ".join(p.cmdline()) for p in node_processes(node_dir)),
        "mounts": node_mounts(node_dir),
        "links": sorted(line.split(":")[1].strip() for line in links
                        if BRIDGE in line or "veth" in line),
        "cgroups": sorted(str(h / CGROUP_ROOT) for h in hierarchies() if (h / CGROUP_ROOT).exists()),
        "iptables": _iptables_rules(),
        "sysctls": {name: _sysctl(name) for name in SYSCTLS},
        "paths": sorted(p for p in OUTSIDE if os.path.lexists(p)),
        "record": RECORD.exists(),
        "node_dir": os.path.exists(node_dir),
    }
