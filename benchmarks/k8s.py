"""Measure the k8s backend against the cluster $KUBECONFIG points to.

- create N agents concurrently: wall time and API requests per agent;
- create-to-ready p50/p95 of those agents (watch-driven);
- list latency and API calls per list with M agents in the cache;
- the same manifests applied by ``kubectl apply --server-side`` as the baseline.

Each phase uses its own fresh namespace, deleted afterwards. Usage:
``KUBECONFIG=... python benchmarks/k8s.py [--create 200] [--list 1000] [--kubectl PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import kr8s.asyncio

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.render import dump_yaml, render_agent
from agentproxy.settings import load_settings
from agentproxy.spec import build_spec

TIMEOUT = 600.0


def _settings(namespace: str):
    return load_settings(overrides=[f"k8s_mode.namespace={namespace}", "k8s_mode.pod_address=pod_ip"],
                         environ={}).settings


async def _namespace(client: Client) -> str:
    name = f"bench-{uuid.uuid4().hex[:6]}"
    await client.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": name}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            await client.request("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default")
            return name
        except Exception:
            await asyncio.sleep(0.2)
    raise RuntimeError("the namespace's default ServiceAccount never appeared")


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def _create_many(backend: K8sBackend, count: int, prefix: str) -> tuple[float, int, list[float]]:
    """Create ``count`` agents at once; returns wall time, API calls and create-to-ready times."""
    started: dict[str, float] = {}
    ready: dict[str, float] = {}
    done = asyncio.Event()

    async def watch():
        async for event in backend.events():
            agent = event.agent
            if agent.status == AgentStatus.READY and agent.id in started and agent.id not in ready:
                ready[agent.id] = time.monotonic() - started[agent.id]
                if len(ready) == count:
                    done.set()
                    return
    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    calls = backend.client.calls
    t0 = time.monotonic()

    async def one(i: int):
        agent_id = f"{prefix}{i}"
        started[agent_id] = time.monotonic()
        await backend.create(build_spec(backend.settings, "bench", agent_id))
    await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.monotonic() - t0
    used = backend.client.calls - calls
    await asyncio.wait_for(done.wait(), TIMEOUT)
    watcher.cancel()
    return wall, used, list(ready.values())


def _kubectl_apply(kubectl: str, namespace: str, count: int, prefix: str) -> float:
    """Wall time of one ``kubectl apply --server-side`` of every agent's manifests."""
    settings = _settings(namespace)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "agents.yaml")
        with open(path, "w") as f:
            for i in range(count):
                f.write(dump_yaml(render_agent(settings, build_spec(settings, "bench", f"{prefix}{i}"))))
        t0 = time.monotonic()
        subprocess.run([kubectl, "apply", "--server-side", "--field-manager=kubectl-bench", "-f", path],
                       check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - t0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--create", type=int, default=200, help="agents created concurrently (default 200)")
    parser.add_argument("--list", type=int, default=1000, help="agents in the cache when timing list (default 1000)")
    parser.add_argument("--kubectl", default=shutil.which("kubectl"), help="kubectl for the baseline")
    args = parser.parse_args()
    api = await kr8s.asyncio.api()
    admin = Client(api)
    rows: list[tuple[str, str]] = []
    namespaces: list[str] = []
    try:
        ns = await _namespace(admin)
        namespaces.append(ns)
        backend = K8sBackend(_settings(ns), client=Client(api))
        await backend.start()
        wall, calls, ready = await _create_many(backend, args.create, "c")
        rows += [(f"create {args.create} agents concurrently (wall)", f"{wall:.2f} s ({args.create / wall:.0f} agents/s)"),
                 ("API requests per create", f"{calls / args.create:.2f}"),
                 ("create-to-ready p50 / p95", f"{statistics.median(ready):.2f} s / {_pct(ready, 0.95):.2f} s")]
        await backend.close()

        if args.kubectl:
            ns2 = await _namespace(admin)
            namespaces.append(ns2)
            k_wall = await asyncio.to_thread(_kubectl_apply, args.kubectl, ns2, args.create, "k")
            rows += [(f"kubectl apply --server-side of the same {args.create} agents", f"{k_wall:.2f} s"),
                     ("agentproxy create / kubectl apply (wall ratio)", f"{wall / k_wall:.2f}")]

        ns3 = await _namespace(admin)
        namespaces.append(ns3)
        lister = K8sBackend(_settings(ns3), client=Client(api))
        await lister.start()
        await _create_many(lister, args.list, "l")
        before = lister.client.calls
        timings = []
        for _ in range(50):
            t0 = time.perf_counter()
            agents = await lister.list()
            timings.append(time.perf_counter() - t0)
        assert len(agents) == args.list
        rows += [(f"list with {args.list} agents p50 / p95", f"{statistics.median(timings) * 1e3:.1f} ms / "
                                                            f"{_pct(timings, 0.95) * 1e3:.1f} ms"),
                 ("API calls per list", f"{(lister.client.calls - before) / 50:.0f}")]
        await lister.close()
    finally:
        for ns in namespaces:
            await admin.request("DELETE", f"/api/v1/namespaces/{ns}")
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
