"""Measure agents on the test cluster's real node (``AGENTPROXY_REAL_NODE=1 bin/just cluster-up``).

- create N agents concurrently (real agentapi pods with local-path volumes):
  create-to-ready p50/p95/max, watch-driven, and the share of it each step of the start took
  (the steps of ``GET .../progress``);
- memory of the node's components with those N agents running: containerd,
  kubelet, local-path-provisioner, the pods' shims, and the pods themselves
  (their cgroups' memory usage).

Runs in a fresh namespace annotated for the real node, deleted afterwards.
Usage: ``KUBECONFIG=.../cluster/kubeconfig python -m benchmarks.real_node [--agents 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import kr8s.asyncio
import psutil

from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.settings import load_settings

from .k8s import create_many, percentile

LABEL = "agentproxy.io/real-node"
CGROUP = Path("/sys/fs/cgroup/memory/agentproxy-real-node/kubepods")


async def real_node_namespace(client: Client, prefix: str = "bench-rn") -> str:
    """A fresh namespace under restricted Pod Security whose pods go to the real node, once its
    default ServiceAccount (which pods need, made by a controller) is there; deleted again if
    that never comes."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await client.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        "annotations": {"scheduler.alpha.kubernetes.io/node-selector": f"{LABEL}=true",
                        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
                            [{"key": LABEL, "operator": "Exists", "effect": "NoSchedule"}])}}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await client.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return name
        except Exception:
            await asyncio.sleep(0.2)
    await client.request("DELETE", f"/api/v1/namespaces/{name}")
    raise RuntimeError("the namespace's default ServiceAccount never appeared")


def _rss(pid: int) -> int:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return 0


def _memory(cluster_dir: Path) -> list[tuple[str, str]]:
    rows = []
    for name in ("containerd", "kubelet", "local-path-provisioner"):
        try:
            pid = json.loads((cluster_dir / "run" / f"{name}.pid").read_text())["pid"]
        except OSError:
            continue
        rows.append((f"RSS {name}", f"{_rss(pid) / 2**20:.0f} MiB"))
    socket = str(cluster_dir / "node")
    shims = [p for p in psutil.process_iter(["name", "cmdline"])
             if p.info["name"] == "containerd-shim-runc-v2" and any(socket in a for a in p.info["cmdline"] or [])]
    total = sum(_rss(p.pid) for p in shims)
    rows.append((f"RSS of {len(shims)} shims (total / each)", f"{total / 2**20:.0f} MiB / "
                                                             f"{total / max(len(shims), 1) / 2**20:.1f} MiB"))
    usage = CGROUP / "memory.usage_in_bytes"
    if usage.exists():
        rows.append(("memory of all pods (kubepods cgroup, page cache included)",
                     f"{int(usage.read_text()) / 2**20:.0f} MiB"))
    return rows


def step_shares(records: list[Any]) -> list[tuple[str, str]]:
    """Per step of the starts (``.../progress``): p50 seconds and the share of create-to-ready
    it took, over every start that ended ready."""
    ended = [r for r in records if r is not None and r.steps and r.steps[-1].name == "ready"]
    if not ended:
        return [("start steps", "no start ended ready")]
    total = sum(s.seconds for r in ended for s in r.steps)
    names = list(dict.fromkeys(s.name for r in ended for s in r.steps))
    rows = [(f"start steps of {len(ended)} agents", "p50 s / share of create-to-ready")]
    for name in names:
        seconds = [s.seconds for r in ended for s in r.steps if s.name == name]
        rows.append((f"  {name}", f"{statistics.median(seconds):.2f} s / {100 * sum(seconds) / total:.0f} %"))
    return rows


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=20, help="agents created concurrently (default 20)")
    args = parser.parse_args()
    cluster_dir = Path(os.environ["KUBECONFIG"]).resolve().parent
    api = await kr8s.asyncio.api()
    admin = Client(api)
    ns = await real_node_namespace(admin)
    rows: list[tuple[str, str]] = []
    try:
        settings = load_settings(overrides=[
            f"k8s_mode.namespace={ns}", "k8s_mode.pod_address=pod_ip", "k8s_mode.image_pull_policy=Never",
            "k8s_mode.storage_class=local-path", "k8s_mode.resources.cpu_request=50m"], environ={}).settings
        backend = K8sBackend(settings, client=Client(api))
        await backend.start()
        t0 = time.monotonic()
        _, _, ready = await create_many(backend, args.agents, "r")
        rows += [(f"{args.agents} agents created at once: all ready after", f"{time.monotonic() - t0:.1f} s"),
                 ("create-to-ready p50 / p95 / max", f"{statistics.median(ready):.2f} s / {percentile(ready, 0.95):.2f} s / "
                                                     f"{max(ready):.2f} s")]
        rows += step_shares([backend.progress.get(f"r{i}") for i in range(args.agents)])
        await asyncio.sleep(5)  # let the echo agents settle before reading memory
        rows += _memory(cluster_dir)
        await backend.close()
    finally:
        await admin.request("DELETE", f"/api/v1/namespaces/{ns}")
        await admin.close()
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    from .cluster_check import require_cluster

    if not {"-h", "--help"} & set(sys.argv):
        require_cluster("bench-real-node")
    sys.exit(asyncio.run(main()))
