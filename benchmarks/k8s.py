"""Measure the k8s backend against the cluster $KUBECONFIG points to.

- create N agents concurrently: wall time and API requests per agent, against one
  ``kubectl apply --server-side -f`` of the same manifests (the ratio of the two);
- one agent's create against ``kubectl apply --server-side`` of its four manifests;
- create-to-ready p50/p95 of the concurrent agents (watch-driven);
- listing with M agents in the cache: in the backend, and ``GET /agents`` and
  ``GET /sessions/S/agents`` (a session of 2 among them) over HTTP from a real
  ``agentproxy`` app on 127.0.0.1.

Create figures are medians of ``--runs`` runs, each in fresh namespaces (deleted
afterwards, and waited for, so that a run does not share the control plane with
the previous run's deletions). Usage:
``KUBECONFIG=... python -m benchmarks.k8s [--create 200] [--list 1000] [--runs 3] [--kubectl PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import kr8s.asyncio
from aiohttp import web

from agentproxy.api.app import create_app
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client, NamespaceMissing
from agentproxy.render import dump_yaml, render_agent
from agentproxy.settings import load_settings
from agentproxy.spec import build_spec

TIMEOUT = 600.0
SINGLE_CREATES = 5
"""Single creates (and single kubectl applies) per run."""
LIST_REQUESTS = 50
SMALL_SESSION = "small"


def _settings(namespace: str):
    return load_settings(overrides=[f"k8s_mode.namespace={namespace}", "k8s_mode.pod_address=pod_ip",
                                    "agents.max_per_session=0", "agents.max_per_owner=0"],
                         environ={}).settings


def _default_kubectl() -> str | None:
    """The cluster's own kubectl from the cache, else the one on PATH."""
    cache = Path(os.environ.get("AGENTPROXY_CACHE", Path.home() / ".cache" / "agentproxy")) / "bin"
    for candidate in sorted(cache.glob("kubernetes-v*/kubectl"), reverse=True):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("kubectl")


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


async def _drop_namespaces(client: Client, names: list[str], wait: float = 180.0) -> None:
    """Delete the namespaces and wait (bounded) until they are gone."""
    for name in names:
        await client.request("DELETE", f"/api/v1/namespaces/{name}")
    deadline = time.monotonic() + wait
    for name in names:
        while time.monotonic() < deadline and await _exists(client, name):
            await asyncio.sleep(1.0)
    names.clear()


async def _exists(client: Client, namespace: str) -> bool:
    try:
        return await client.get(f"/api/v1/namespaces/{namespace}") is not None
    except NamespaceMissing:  # what the client makes of the 404 of a namespace
        return False


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def create_many(backend: K8sBackend, count: int, prefix: str, session: str = "bench",
                       wait_ready: bool = True) -> tuple[float, int, list[float]]:
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
    assert backend.client is not None  # started
    calls = backend.client.calls
    t0 = time.monotonic()

    async def one(i: int):
        agent_id = f"{prefix}{i}"
        started[agent_id] = time.monotonic()
        await backend.create(build_spec(backend.settings, session, agent_id))
    await asyncio.gather(*(one(i) for i in range(count)))
    wall = time.monotonic() - t0
    used = backend.client.calls - calls
    if wait_ready:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    watcher.cancel()
    return wall, used, list(ready.values())


def _manifests(namespace: str, count: int, prefix: str, directory: str) -> str:
    settings = _settings(namespace)
    path = os.path.join(directory, f"{prefix}.yaml")
    with open(path, "w") as f:
        for i in range(count):
            f.write(dump_yaml(render_agent(settings, build_spec(settings, "bench", f"{prefix}{i}"))))
    return path


def _kubectl_apply(kubectl: str, path: str) -> float:
    """Wall time of one ``kubectl apply --server-side -f path``."""
    t0 = time.monotonic()
    subprocess.run([kubectl, "apply", "--server-side", "--field-manager=kubectl-bench", "-f", path],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def _http_timings(port: int, path: str, count: int) -> tuple[list[float], int]:
    """Latencies of ``count`` GETs of ``path`` on one kept-alive connection, and the body size."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings, size = [], 0
    try:
        for _ in range(count):
            t0 = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            timings.append(time.perf_counter() - t0)
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}")
            size = len(body)
    finally:
        conn.close()
    return timings, size


async def _creates(api, admin: Client, args, rows: list[tuple[str, str]]) -> None:
    """The concurrent and single creates against kubectl, ``args.runs`` times."""
    walls, per_create, ready_all, k_walls, singles, k_singles = [], [], [], [], [], []
    namespaces: list[str] = []
    try:
        for run in range(args.runs):
            ns = await _namespace(admin)
            namespaces.append(ns)
            backend = K8sBackend(_settings(ns), client=Client(api))
            await backend.start()
            try:
                wall, calls, ready = await create_many(backend, args.create, f"c{run}-")
                walls.append(wall)
                per_create.append(calls / args.create)
                ready_all += ready
                for i in range(SINGLE_CREATES):
                    t0 = time.monotonic()
                    await backend.create(build_spec(backend.settings, "bench", f"one{run}-{i}"))
                    singles.append(time.monotonic() - t0)
            finally:
                await backend.close()
            if args.kubectl:
                ns2 = await _namespace(admin)
                namespaces.append(ns2)
                with tempfile.TemporaryDirectory() as tmp:
                    path = _manifests(ns2, args.create, f"k{run}-", tmp)
                    k_walls.append(await asyncio.to_thread(_kubectl_apply, args.kubectl, path))
                    for i in range(SINGLE_CREATES):
                        one = _manifests(ns2, 1, f"kone{run}-{i}-", tmp)
                        k_singles.append(await asyncio.to_thread(_kubectl_apply, args.kubectl, one))
            await _drop_namespaces(admin, namespaces)
    finally:
        if namespaces:
            await _drop_namespaces(admin, namespaces)
    wall, single = statistics.median(walls), statistics.median(singles)
    rows += [(f"create {args.create} agents concurrently (wall, median of {args.runs})",
              f"{wall:.2f} s ({args.create / wall:.0f} agents/s)"),
             ("API requests per create", f"{statistics.median(per_create):.2f}"),
             ("create-to-ready p50 / p95", f"{statistics.median(ready_all):.2f} s / {percentile(ready_all, 0.95):.2f} s"),
             (f"one create (median of {len(singles)})", f"{single * 1e3:.1f} ms")]
    if k_walls:
        k_wall, k_single = statistics.median(k_walls), statistics.median(k_singles)
        rows += [(f"kubectl apply --server-side of the same {args.create} agents ({4 * args.create} manifests)",
                  f"{k_wall:.2f} s"),
                 (f"kubectl apply --server-side of one agent's 4 manifests (median of {len(k_singles)})",
                  f"{k_single * 1e3:.1f} ms"),
                 (f"{args.create} creates: kubectl time / agentproxy time (higher is faster)",
                  f"{k_wall / wall:.2f}x"),
                 ("one create: kubectl time / agentproxy time (higher is faster)", f"{k_single / single:.2f}x")]
    _print(rows)


async def _listing(api, admin: Client, args, rows: list[tuple[str, str]]) -> None:
    """List latency in the backend and over HTTP with ``args.list`` agents."""
    namespaces: list[str] = []
    try:
        ns = await _namespace(admin)
        namespaces.append(ns)
        settings = _settings(ns)
        lister = K8sBackend(settings, client=Client(api))
        await lister.start()
        runner: web.AppRunner | None = None
        try:
            await create_many(lister, args.list - 2, "l", wait_ready=False)
            await create_many(lister, 2, "s", session=SMALL_SESSION, wait_ready=False)
            assert lister.client is not None  # started
            before = lister.client.calls
            timings = []
            for _ in range(LIST_REQUESTS):
                t0 = time.perf_counter()
                agents = await lister.list()
                timings.append(time.perf_counter() - t0)
            assert len(agents) == args.list
            calls = (lister.client.calls - before) / LIST_REQUESTS
            runner = web.AppRunner(create_app(settings, lister), handler_cancellation=True, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            every, size = await asyncio.to_thread(_http_timings, port, "/agents", LIST_REQUESTS)
            small, _ = await asyncio.to_thread(_http_timings, port, f"/sessions/{SMALL_SESSION}/agents",
                                               LIST_REQUESTS)
        finally:
            if runner is not None:
                await runner.cleanup()
            await lister.close()
        rows += [(f"list with {args.list} agents in the backend p50 / p95",
                  f"{statistics.median(timings) * 1e3:.2f} ms / {percentile(timings, 0.95) * 1e3:.2f} ms"),
                 ("API calls per list", f"{calls:.0f}"),
                 (f"GET /agents over HTTP, {args.list} agents ({size / 1e6:.2f} MB) p50 / p95",
                  f"{statistics.median(every) * 1e3:.2f} ms / {percentile(every, 0.95) * 1e3:.2f} ms"),
                 (f"GET /sessions/S/agents over HTTP, 2 of {args.list} agents p50 / p95",
                  f"{statistics.median(small) * 1e3:.2f} ms / {percentile(small, 0.95) * 1e3:.2f} ms")]
        _print(rows)  # before the wait for the namespace's deletion
    finally:
        if namespaces:
            await _drop_namespaces(admin, namespaces)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--create", type=int, default=200, help="agents created concurrently (default 200)")
    parser.add_argument("--list", type=int, default=1000, help="agents in the cache when timing list (default 1000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the create phase (default 3)")
    parser.add_argument("--kubectl", default=_default_kubectl(), help="kubectl for the baseline")
    parser.add_argument("--only", choices=("create", "list"), help="run only this phase")
    args = parser.parse_args()
    api = await kr8s.asyncio.api()
    admin = Client(api)
    try:
        if args.only != "list":
            await _creates(api, admin, args, [])
        if args.only != "create":
            await _listing(api, admin, args, [])
    finally:
        await admin.close()
    return 0


def _print(rows: list[tuple[str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", flush=True)


if __name__ == "__main__":
    from .cluster_check import require_cluster

    if not {"-h", "--help"} & set(sys.argv):
        require_cluster("bench-k8s")
    sys.exit(asyncio.run(main()))
