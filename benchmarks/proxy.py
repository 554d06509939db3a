"""Benchmark of the agent API proxy: GET /status directly vs through agentproxy, and SSE delay.

Three kinds of process, all on 127.0.0.1: the imitation agentapi server
(``tests/unit/api/upstream.py``), agentproxy's HTTP API over an in-memory
backend whose single agent points at that server, and a load generator (an
aiohttp client in a process of its own, so that it does not share an event loop
with what it measures). For each target and concurrency the generator runs for
at most ``--duration`` seconds and ``--max-requests`` requests, after a short
warm-up, and reports requests/s and latency percentiles. The SSE part reads
events the upstream stamps with its monotonic clock when it writes them and
reports how long each took to arrive, directly and through the proxy.

Usage: ``python benchmarks/proxy.py [--duration 3] [--max-requests 20000] [--concurrency 1 32]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
AGENT_PATH = "/sessions/bench/agents/a1/api"
START_TIMEOUT = 30.0


# --- roles run in child processes --------------------------------------------------------------

def serve_proxy(upstream: str) -> None:
    """Serve agentproxy with one ready agent (bench/a1) whose API is ``upstream``."""
    sys.path.insert(0, str(REPO))
    from agentproxy.api.serve import run_server
    from agentproxy.settings import Settings
    from agentproxy.spec import build_spec
    from tests.unit.api.memory_backend import MemoryBackend

    async def main() -> None:
        settings = Settings()
        backend = MemoryBackend(upstream=upstream)
        await backend.create(build_spec(settings, "bench", "a1"))
        await run_server(settings, backend, host="127.0.0.1", port=0,
                         on_listening=lambda addresses: print(f"listening on http://127.0.0.1:{addresses[0][1]}",
                                                              flush=True))

    asyncio.run(main())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def load(url: str, concurrency: int, duration: float, max_requests: int, warmup: float) -> None:
    """Hammer ``url`` with GET from ``concurrency`` connections; print a JSON summary."""
    import aiohttp

    async def main() -> dict[str, Any]:
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            latencies: list[float] = []
            errors = 0
            state = {"measure": False, "deadline": time.perf_counter() + warmup, "issued": 0}

            async def worker() -> None:
                nonlocal errors
                clock = time.perf_counter
                while True:
                    now = clock()
                    if now >= state["deadline"]:
                        return
                    if state["measure"]:
                        if state["issued"] >= max_requests:
                            return
                        state["issued"] += 1
                    started = clock()
                    try:
                        async with session.get(url) as response:
                            await response.read()
                            ok = response.status == 200
                    except aiohttp.ClientError:
                        ok = False
                    if state["measure"]:
                        if ok:
                            latencies.append(clock() - started)
                        else:
                            errors += 1

            await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up: connections, caches
            state.update(measure=True, deadline=time.perf_counter() + duration)
            begun = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - begun
        return {"requests": len(latencies), "errors": errors, "seconds": elapsed,
                "rps": len(latencies) / elapsed if elapsed else 0.0,
                "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}

    print(json.dumps(asyncio.run(main())), flush=True)


def sse(url: str, events: int, interval: float) -> None:
    """Read ``events`` upstream-stamped events from ``url``; print the delays as JSON."""
    import aiohttp

    async def main() -> dict[str, Any]:
        delays: list[float] = []
        timeout = aiohttp.ClientTimeout(total=events * interval + 30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"{url}?count={events}&interval={interval}") as response:
                while len(delays) < events:
                    line = await response.content.readline()
                    if not line:
                        break
                    if line.startswith(b"data: ") and b'"sent"' in line:
                        received = time.monotonic()
                        delays.append(received - json.loads(line[6:])["sent"])
        return {"events": len(delays), "p50_ms": percentile(delays, 0.5) * 1000,
                "p99_ms": percentile(delays, 0.99) * 1000, "max_ms": max(delays) * 1000 if delays else None,
                "mean_ms": statistics.fmean(delays) * 1000 if delays else None}

    print(json.dumps(asyncio.run(main())), flush=True)


# --- orchestration ---------------------------------------------------------------------------

def start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    """Start a server process and return it with the base URL it prints."""
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()  # type: ignore[union-attr]
        if line.startswith("listening on "):
            return process, line.split()[-1]
        if not line and process.poll() is not None:
            break
    stop(process)
    raise RuntimeError(f"{' '.join(args)} did not start")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_role(*args: str, timeout: float) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], cwd=REPO, capture_output=True, text=True,
                         timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description="Benchmark the agent API proxy against direct requests.")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--max-requests", type=int, default=20000, help="requests per measurement at most")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up before each measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--events", type=int, default=200, help="SSE events per measurement")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between SSE events")
    parser.add_argument("--role", choices=["proxy", "load", "sse"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "proxy":
        return serve_proxy(args.url)
    if args.role == "load":
        return load(args.url, args.concurrency[0], args.duration, args.max_requests, args.warmup)
    if args.role == "sse":
        return sse(args.url, args.events, args.interval)

    upstream, upstream_url = start([sys.executable, "-m", "tests.unit.api.upstream", "--port", "0"])
    try:
        proxy, proxy_url = start([sys.executable, __file__, "--role", "proxy", "--url", upstream_url])
        try:
            targets = {"direct": f"{upstream_url}/status", "proxy": f"{proxy_url}{AGENT_PATH}/status"}
            bound = args.warmup + args.duration + 60
            rows = []
            for concurrency in args.concurrency:
                result = {name: run_role("--role", "load", "--url", url, "--concurrency", str(concurrency),
                                         "--duration", str(args.duration), "--max-requests", str(args.max_requests),
                                         "--warmup", str(args.warmup), timeout=bound)
                          for name, url in targets.items()}
                rows.append((concurrency, result))
            sse_bound = args.events * args.interval + 60
            sse_result = {name: run_role("--role", "sse", "--url", url, "--events", str(args.events),
                                         "--interval", str(args.interval), timeout=sse_bound)
                          for name, url in {"direct": f"{upstream_url}/events",
                                            "proxy": f"{proxy_url}{AGENT_PATH}/events"}.items()}
        finally:
            stop(proxy)
    finally:
        stop(upstream)
    report(rows, sse_result, os.cpu_count() or 1)


def report(rows: list[tuple[int, dict[str, dict[str, Any]]]], sse_result: dict[str, dict[str, Any]],
           cpus: int) -> None:
    print(f"GET /status, {cpus} CPUs shared by upstream, proxy and load generator")
    print(f"{'conc':>4} {'target':<7} {'requests':>8} {'err':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency, result in rows:
        for name in ("direct", "proxy"):
            r = result[name]
            print(f"{concurrency:>4} {name:<7} {r['requests']:>8} {r['errors']:>4} {r['rps']:>9.0f} "
                  f"{r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f}")
        d, p = result["direct"], result["proxy"]
        print(f"{concurrency:>4} {'ratio':<7} {'':>8} {'':>4} {p['rps'] / d['rps']:>9.2f} "
              f"{p['p50_ms'] / d['p50_ms']:>8.2f} {p['p99_ms'] / d['p99_ms']:>8.2f}   (proxy / direct)")
    print()
    print("SSE: delay from the upstream writing an event to the client reading it")
    print(f"{'target':<7} {'events':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("direct", "proxy"):
        r = sse_result[name]
        print(f"{name:<7} {r['events']:>6} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.3f}")
    print(f"{'added':<7} {'':>6} {sse_result['proxy']['p50_ms'] - sse_result['direct']['p50_ms']:>8.3f} "
          f"{sse_result['proxy']['p99_ms'] - sse_result['direct']['p99_ms']:>8.3f}   (proxy - direct)")


if __name__ == "__main__":
    main()
