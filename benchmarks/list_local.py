"""Lists of many local agents: ``GET /agents`` with ``--agents`` echo agents (default 200).

Starts the real agentapi with the echo demo agent ``--agents`` times under a local backend in
this process, serves it with the real app on 127.0.0.1, and measures, once every agent is
ready:

- ``GET /agents`` (every agent) and ``GET /sessions/small/agents`` (a session of 2) over HTTP,
  p50 and p95 of ``--requests`` requests on one kept-alive connection;
- in the process, what a list costs with each agent's JSON made once per change (the route's
  path: the backend's states, their cached bytes joined) against the JSON made afresh on every
  read (a supervisor's state built again and serialised: what every list did before), in the
  same run, interleaved;
- the proxy's RSS growth per supervised agent (this process, before the creates and once every
  agent is ready), and the load average of the machine.

Every agent is deleted at the end, and no process may be left in their directories.

Usage: ``python -m benchmarks.list_local [--agents 200] [--requests 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from aiohttp import web

from agentproxy.agentapi import locate
from agentproxy.api.app import create_app
from agentproxy.api.listing import AgentTexts
from agentproxy.api.model import agent_json
from agentproxy.backends.index import ANY_OWNER
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.settings import Settings
from agentproxy.spec import build_spec
from testenv.ports import free_block

from .k8s import _http_timings, percentile
from .local import all_ready_events, rss

SMALL_SESSION = "small"
READY_TIMEOUT = 600.0


def process_cpu() -> float:
    """CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.3f} ms / {percentile(values, 0.95) * 1e3:.3f} ms"


def in_process(backend: LocalBackend, rounds: int) -> tuple[list[float], ...]:
    """Wall and CPU times of a list body made from cached texts and made afresh, interleaved
    (same moment, same load): CPU time is what a loaded machine does not inflate."""
    texts = AgentTexts()
    cached, afresh, cached_cpu, afresh_cpu = [], [], [], []
    for _ in range(rounds):
        c0, t0 = time.thread_time(), time.perf_counter()
        states = sorted(backend._listed(None, ANY_OWNER), key=lambda s: (s.created_at, s.id))
        texts.list_parts(states, complete=True)
        c1, t1 = time.thread_time(), time.perf_counter()
        fresh = sorted((s.build_state() for s in backend._agents.values()), key=lambda s: (s.created_at, s.id))
        json.dumps({"agents": [agent_json(s) for s in fresh]}).encode()
        c2, t2 = time.thread_time(), time.perf_counter()
        cached.append(t1 - t0)
        afresh.append(t2 - t1)
        cached_cpu.append(c1 - c0)
        afresh_cpu.append(c2 - c1)
    return cached, afresh, cached_cpu, afresh_cpu


def http_cpu(port: int, path: str, count: int) -> tuple[list[float], int, float]:
    """:func:`_http_timings`, and the CPU time of this process per request (the server's and
    the client thread's)."""
    c0 = process_cpu()
    timings, size = _http_timings(port, path, count)
    return timings, size, (process_cpu() - c0) / count


async def run(backend: LocalBackend, settings: Settings, args: argparse.Namespace) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    before = rss()
    ids = {f"a{i}" for i in range(args.agents - 2)}
    ready = asyncio.ensure_future(all_ready_events(backend, ids | {"s0", "s1"}))
    await asyncio.sleep(0)
    t0 = time.monotonic()
    await asyncio.gather(*(backend.create(build_spec(settings, "bench", agent_id, "echo")) for agent_id in sorted(ids)),
                         *(backend.create(build_spec(settings, SMALL_SESSION, f"s{i}", "echo")) for i in range(2)))
    await asyncio.wait_for(ready, READY_TIMEOUT)
    rows.append((f"{args.agents} echo agents created at once, all ready", f"{time.monotonic() - t0:.1f} s"))
    await asyncio.sleep(2 * settings.local_mode.supervision.sample_interval)  # every agent sampled once
    grown = rss() - before
    rows.append(("proxy RSS growth per supervised agent", f"{grown / args.agents / 1024:.0f} KiB "
                 f"({grown / 1e6:.1f} MB for {args.agents})"))
    runner = web.AppRunner(create_app(settings, backend), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        every, size, every_cpu = await asyncio.to_thread(http_cpu, port, "/agents", args.requests)
        small, _, small_cpu = await asyncio.to_thread(http_cpu, port, f"/sessions/{SMALL_SESSION}/agents",
                                                      args.requests)
    finally:
        await runner.cleanup()
    cached, afresh, cached_cpu, afresh_cpu = in_process(backend, args.requests)
    rows += [(f"GET /agents over HTTP, {args.agents} agents ({size / 1e3:.0f} kB) p50 / p95",
              f"{_ms(every)} (CPU {every_cpu * 1e3:.3f} ms per request)"),
             (f"GET /sessions/S/agents over HTTP, 2 of {args.agents} agents p50 / p95",
              f"{_ms(small)} (CPU {small_cpu * 1e3:.3f} ms per request)"),
             ("list body in the process, JSON once per change p50 / p95",
              f"{_ms(cached)} (CPU p50 {statistics.median(cached_cpu) * 1e3:.3f} ms)"),
             ("list body in the process, JSON made on every read (before) p50 / p95",
              f"{_ms(afresh)} (CPU p50 {statistics.median(afresh_cpu) * 1e3:.3f} ms)"),
             ("before / after (in the process, CPU p50)",
              f"{statistics.median(afresh_cpu) / statistics.median(cached_cpu):.1f}x"),
             ("load average (1, 5, 15 min) at the end", "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))]
    return rows


async def main(args: argparse.Namespace) -> int:
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi is not installed: run `bin/just agentapi` or pass --agentapi PATH")
    work = Path(tempfile.mkdtemp(prefix="agentproxy-bench-"))
    try:
        settings = Settings()
        settings.local_mode.agentapi_binary = agentapi
        settings.local_mode.ports.start, settings.local_mode.ports.end = free_block(args.agents + 20, mostly=True)
        settings.local_mode.data_dir = str(work / "data")
        settings.agents.max_per_session = settings.agents.max_per_owner = 0
        backend = LocalBackend(settings)
        await backend.start()
        try:
            rows = await run(backend, settings, args)
        finally:
            await asyncio.gather(*(backend.delete(s.session, s.id) for s in await backend.list()))
            await backend.close()
        left = [p.pid for p in psutil.process_iter(["cwd"]) if str(p.info.get("cwd") or "").startswith(str(work))]
        rows.append(("processes left in the agents' directories after delete", str(len(left))))
        width = max(len(r[0]) for r in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}", flush=True)
        return 1 if left else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200, help="echo agents (default 200; at least 3)")
    parser.add_argument("--requests", type=int, default=300, help="requests per measured list (default 300)")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one agentproxy finds)")
    args = parser.parse_args()
    if args.agents < 3 or args.requests < 1:
        parser.error("--agents must be at least 3 and --requests at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_args())))
