"""The k8s backend's read path with many agents, without a cluster: ``--agents`` ready agents
(default 10,000) in an imitation of the API server's answers (see :mod:`.synthetic`: objects
shaped as the server lists them, not taken from a cluster), under the real client, cache,
index and app.

Measures, in this process:

- a start: the backend lists every kind and derives every agent, and the process collects and
  freezes its heap as ``agentproxy serve`` does before it listens (wall and CPU time, list and
  watch requests made), then the reconcile pass its start schedules for every agent (CPU time,
  how many agents it rendered and compared, and the writes it asked for: none, since nothing
  drifted), and a second pass of every agent with nothing changed (as after a relist);
- the memory the cache, the index and the cached JSON hold per agent (RSS growth from before
  the start to after the first list, the wire bytes of the lists excluded: they were made
  before);
- lists (wall time, and CPU time, which a loaded machine does not inflate): ``backend.list()``
  and the route's body (each agent's JSON once per change) for every agent and for a session
  of 2, the first list after the start (every agent's JSON made) and the following ones; the
  same over HTTP from the real app on 127.0.0.1; and the body made with every agent's JSON
  made afresh (as without the cache), in the same run, for the ratio;
- the same lists again while ``--changes-per-second`` agents change a second (a pod event each,
  a container restarted: a new state for the agent);
- the proxy's CPU while idle (``--idle`` seconds, nothing changing).

Usage: ``python -m benchmarks.list_cache [--agents 10000] [--requests 50] [--idle 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import os
import statistics
import sys
import time

from aiohttp import web

from agentproxy import heap
from agentproxy.api.app import create_app
from agentproxy.api.listing import AgentTexts
from agentproxy.api.model import agent_json
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.kinds import POD
from agentproxy.settings import load_settings

from .k8s import percentile
from .list_local import http_cpu, process_cpu
from .local import rss
from .synthetic import synthetic_namespace

SMALL = "small"
NAMESPACE = "synthetic"


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.3f} ms / {percentile(values, 0.95) * 1e3:.3f} ms"


async def _timed(count: int, make) -> str:
    """Wall p50 / p95 of ``count`` calls of ``make``, and their CPU p50 (this thread's: what a
    loaded machine does not inflate)."""
    timings, cpu = [], []
    for _ in range(count):
        c0, t0 = time.thread_time(), time.perf_counter()
        await make()
        timings.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return f"{_ms(timings)} (CPU p50 {statistics.median(cpu) * 1e3:.3f} ms)"


async def _reconciled(backend: K8sBackend, limit: float) -> tuple[float, float]:
    """Seconds until no reconcile pass is pending (bounded by ``limit``), and the longest the
    event loop went without running a task meanwhile (what a request would have waited)."""
    t0 = time.monotonic()
    stall, tick = 0.0, time.monotonic()
    while backend.reconciler.waiting and time.monotonic() - t0 < limit:
        await asyncio.sleep(0.005)
        now = time.monotonic()
        stall, tick = max(stall, now - tick - 0.005), now
    return time.monotonic() - t0, stall


async def run(args: argparse.Namespace) -> list[tuple[str, str]]:
    settings = load_settings(overrides=[f"k8s_mode.namespace={NAMESPACE}", "k8s_mode.pod_address=pod_ip",
                                        "agents.max_per_session=0", "agents.max_per_owner=0"], environ={}).settings
    heap.return_large_blocks()  # as `agentproxy serve` does first: a list's megabytes are mappings of their own
    n = args.agents
    t0 = time.monotonic()
    api = synthetic_namespace(settings, n, SMALL)
    made = time.monotonic() - t0
    wire = sum(len(b) for b in api.bodies.values())
    rows: list[tuple[str, str]] = [(f"synthetic objects of {n} agents (imitation; 5 objects each)",
                                    f"{wire / 1e6:.0f} MB as listed, made in {made:.1f} s")]
    gc.collect()
    before = rss()
    backend = K8sBackend(settings, client=Client(api, transport=api.transport))  # type: ignore[arg-type]  # the imitation of kr8s's Api
    cpu0, t0 = process_cpu(), time.monotonic()
    await backend.start()
    # What `agentproxy serve` does between the backend's start and listening (see agentproxy.api.serve).
    gc.collect()
    gc.freeze()
    started, start_cpu = time.monotonic() - t0, process_cpu() - cpu0
    runner: web.AppRunner | None = None
    try:
        rows.append(("start: every kind listed, every agent derived, heap collected and frozen (wall / CPU)",
                     f"{started:.2f} s / {start_cpu:.2f} s"))
        rows.append(("  requests: lists / watches", f"{len(api.lists)} / {len(api.watches)} "
                     f"({', '.join(sorted(set(api.lists)))})"))
        cpu0 = process_cpu()
        waited, stall = await _reconciled(backend, args.reconcile_limit)
        rows.append((f"reconcile pass of the {n} agents after the start (wall / CPU)",
                     f"{waited:.2f} s / {process_cpu() - cpu0:.2f} s; {backend.reconciler.compared} agents "
                     f"rendered and compared; {backend.reconciler.waiting} still pending"))
        rows.append(("  longest the event loop was held during that pass", f"{stall * 1e3:.0f} ms"))
        compared, cpu0 = backend.reconciler.compared, process_cpu()
        backend.reconciler.sweep(backend.cache.agent_ids() if backend.cache else ())
        waited, stall = await _reconciled(backend, args.reconcile_limit)
        rows.append((f"a second pass of the {n} agents, nothing changed (wall / CPU)",
                     f"{waited:.2f} s / {process_cpu() - cpu0:.2f} s; "
                     f"{backend.reconciler.compared - compared} agents rendered and compared"))
        rows.append(("  writes asked for while starting (repairs, deletes)", str(len(api.writes))))
        listed = await backend.list()
        assert len(listed) == n, f"{len(listed)} agents listed of {n}"
        ready = sum(1 for s in listed if s.status.value == "ready")
        rows.append(("agents listed / ready", f"{len(listed)} / {ready}"))
        texts = AgentTexts()
        t0 = time.perf_counter()
        texts.list_parts(listed, complete=True)
        first = time.perf_counter() - t0
        gc.collect()
        grown = rss() - before
        rows.append(("memory: RSS growth with every agent cached, indexed and its JSON made",
                     f"{grown / 1e6:.0f} MB, {grown / n / 1024:.1f} KiB per agent"))

        async def every_body() -> None:
            texts.list_parts(await backend.list(), complete=True)

        async def session_body() -> None:
            texts.list_parts(await backend.list(session=SMALL))

        async def afresh_body() -> None:
            json.dumps({"agents": [agent_json(s) for s in await backend.list()]}).encode()

        rows += [(f"first list body after the start (every agent's JSON made), {n} agents", f"{first * 1e3:.1f} ms"),
                 (f"backend.list(), {n} agents p50 / p95", await _timed(args.requests, backend.list)),
                 (f"list body in the process, {n} agents p50 / p95", await _timed(args.requests, every_body)),
                 ("list body in the process, session of 2 p50 / p95", await _timed(args.requests, session_body)),
                 (f"list body with every agent's JSON made afresh, {n} agents p50 / p95",
                  await _timed(max(3, args.requests // 5), afresh_body))]
        runner = web.AppRunner(create_app(settings, backend), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        every, size, every_cpu = await asyncio.to_thread(http_cpu, port, "/agents", args.requests)
        small, _, small_cpu = await asyncio.to_thread(http_cpu, port, f"/sessions/{SMALL}/agents", args.requests * 10)
        rows += [(f"GET /agents over HTTP, {n} agents ({size / 1e6:.1f} MB) p50 / p95",
                  f"{_ms(every)} (CPU {every_cpu * 1e3:.3f} ms per request)"),
                 (f"GET /sessions/S/agents over HTTP, 2 of {n} agents p50 / p95",
                  f"{_ms(small)} (CPU {small_cpu * 1e3:.3f} ms per request)")]
        rows += await _while_changing(backend, api, texts, port, args)
        cpu0, t0 = process_cpu(), time.monotonic()
        await asyncio.sleep(args.idle)
        idle = (process_cpu() - cpu0) / (time.monotonic() - t0)
        rows.append((f"CPU while idle ({args.idle:g} s, nothing changing)", f"{idle * 100:.2f} % of a core"))
        rows.append(("writes asked for in all", str(len(api.writes))))
    finally:
        if runner is not None:
            await runner.cleanup()
        await backend.close()
    rows.append(("load average (1, 5, 15 min) at the end", "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())))
    return rows


async def _while_changing(backend: K8sBackend, api, texts: AgentTexts, port: int,
                          args: argparse.Namespace) -> list[tuple[str, str]]:
    """The lists again while agents change: ``--changes-per-second`` pod events on the Pod watch,
    each a container restart of another agent (a new state for it), as a cluster at work sends."""
    assert backend.cache is not None
    pods = sorted(backend.cache.objects(POD), key=lambda pod: pod["metadata"]["name"])
    sent = 0

    async def change() -> None:
        nonlocal sent
        began = time.monotonic()
        while True:
            pod = copy.deepcopy(pods[sent % len(pods)])
            for status in pod["status"].get("containerStatuses") or ():
                status["restartCount"] = status.get("restartCount", 0) + 1 + sent // len(pods)
            api.push(POD.plural, "MODIFIED", pod)
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / args.changes_per_second - time.monotonic()))

    async def every_body() -> None:
        texts.list_parts(await backend.list(), complete=True)  # as the route makes it: its parts

    async def every_body_after_changes() -> None:
        await asyncio.sleep(2 / args.changes_per_second)  # a change or two comes in between (untimed)
        began = time.perf_counter()
        await every_body()
        timings.append(time.perf_counter() - began)

    timings: list[float] = []
    changing = asyncio.ensure_future(change())
    try:
        await asyncio.sleep(1.0)
        for _ in range(args.requests):
            await every_body_after_changes()
        in_process = _ms(timings)
        cpu0, thread0, changed0 = process_cpu(), time.thread_time(), sent
        every, size, _ = await asyncio.to_thread(http_cpu, port, "/agents", args.requests)
        served = (time.thread_time() - thread0) / args.requests
        changes = sent - changed0
    finally:
        changing.cancel()
        await asyncio.gather(changing, return_exceptions=True)
    rate = f"{args.changes_per_second:g} agents changing a second"
    restarted = sum(1 for state in await backend.list() if state.restarts)
    return [(f"list in the process (its parts, as the route writes them), {rate}, a change or two before "
             "each, p50 / p95", in_process),
            ("  agents whose restarts the lists showed by then (the changes went through the watch)", str(restarted)),
            (f"GET /agents over HTTP, {rate}, p50 / p95",
             f"{_ms(every)} (CPU a request: {(process_cpu() - cpu0) / args.requests * 1e3:.2f} ms, of which "
             f"the server's event loop {served * 1e3:.2f} ms, its watch events included; {changes} changes meanwhile)")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000, help="agents (default 10000; at least 3)")
    parser.add_argument("--requests", type=int, default=50, help="requests per measured list (default 50)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured (default 10)")
    parser.add_argument("--changes-per-second", type=float, default=50.0,
                        help="agents changing a second while the lists are measured again (default 50)")
    parser.add_argument("--reconcile-limit", type=float, default=300.0,
                        help="seconds the start's reconcile pass is waited for at most (default 300)")
    args = parser.parse_args()
    if args.agents < 3 or args.requests < 1 or args.changes_per_second <= 0:
        parser.error("--agents must be at least 3, --requests at least 1 and --changes-per-second above 0")
    rows = asyncio.run(run(args))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
