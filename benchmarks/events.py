"""Benchmark: the cost of ``GET /events`` with many agents and many subscribers.

A proxy process (``serve``: the real HTTP API and event streams over an in-memory backend of
``--agents`` agents; a thousand real agents are beyond this machine, and the fan-out does not
depend on what runs behind an agent) changes each agent's status once, ``--rate`` changes a
second, each change stamped with ``CLOCK_MONOTONIC`` (one clock for every process of the
machine). Reader processes (``read``) hold the subscribers' streams, 25 each, and stamp every
read. First with one subscriber (the baseline), then with ``--subscribers``:

- the proxy's CPU seconds for the changes (user + system, from ``/proc``), per change;
- its resident memory with the agents alone, with the subscribers connected, after the changes;
- the latency of a change to its last subscriber (p50, p95, max).

``--compare DIR`` runs a second proxy from another tree (the ``agentproxy`` and ``tests`` of an
earlier commit: ``git archive COMMIT agentproxy tests | tar -x -C DIR``), its rounds interleaved
with this one's, and reports the ratio of their CPU per change.

Usage: ``python -m benchmarks.events [--agents 1000] [--subscribers 100] [--rate 200] [--repeat N]
[--compare DIR]``; run it alone on the machine (``flock`` a lock shared with the other benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.streams import _request, parse_events

ROOT = str(Path(__file__).resolve().parents[1])
"""The repository, where the processes of the benchmark find its modules and the tests' backend."""
PER_READER = 25
"""Streams one reader process holds."""


# --- the proxy process ------------------------------------------------------------------------

async def serve(agents: int) -> None:
    """The ``serve`` role: the API over ``agents`` agents; ``go N RATE`` on stdin makes N changes."""
    from aiohttp import web

    from agentproxy.api import create_app
    from agentproxy.settings import load_settings
    from agentproxy.spec import build_spec
    from tests.unit.api.memory_backend import MemoryBackend

    settings = load_settings(None, ["agents.max_per_session=100000", "agents.max_per_owner=100000"],
                             environ={}).settings
    backend = MemoryBackend()
    await backend.start()
    ids = []
    for n in range(agents):
        state = await backend.create(build_spec(settings, f"s{n % 10}", f"a{n}", "echo"))
        ids.append((state.session, state.id))
    runner = web.AppRunner(create_app(settings, backend, heartbeat_interval=60.0), handler_cancellation=True,
                           access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    import agentproxy
    print("ready", runner.addresses[0][1], agentproxy.__file__, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "go":
            count, rate = int(line[1]), float(line[2])
            began = time.monotonic()
            for n in range(count):
                # Paced, each change in a turn of the loop of its own, as watch events come.
                await asyncio.sleep(max(0.0, began + n / rate - time.monotonic()))
                session, agent_id = ids[n % len(ids)]
                backend.set_state(session, agent_id, message=f"t={time.monotonic_ns()}")
            print("done", flush=True)
    await runner.cleanup()


# --- a reader of many streams ------------------------------------------------------------------

def read_many(url: str, count: int) -> None:
    """The ``read`` role: ``count`` streams of ``url``; on a line on stdin, per change stamp the
    last time any of them received it, as JSON."""
    host, port, request = _request(url)
    socks, reads, chunked = [], {}, {}
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                sys.exit(f"{url}: closed before the headers")
            data += more
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            sys.exit(f"{url}: {head.splitlines()[0].decode(errors='replace')}")
        sock.setblocking(False)
        socks.append(sock)
        reads[sock] = [(time.monotonic_ns(), body)]
        chunked[sock] = b"transfer-encoding: chunked" in head.lower()
    print("ready", flush=True)
    stdin = sys.stdin.fileno()
    # Reads are only stamped and kept while the changes come; they are parsed afterwards.
    while True:
        ready, _, _ = select.select([*socks, stdin], [], [])
        if stdin in ready:
            break
        stamp = time.monotonic_ns()
        for readable in ready:
            assert isinstance(readable, socket.socket)
            try:
                raw = readable.recv(1 << 20)
            except BlockingIOError:
                continue
            if not raw:
                socks.remove(readable)
            else:
                reads[readable].append((stamp, raw))
    last: dict[str, int] = {}
    streams_seen: dict[str, int] = {}
    for sock, pieces in reads.items():
        for stamp, event in parse_events(pieces, chunked[sock]):
            payload = next((line[6:] for line in event.split("\n") if line.startswith("data: ")), None)
            message = json.loads(payload).get("message") if payload else None
            if message and message.startswith("t="):
                key = message[2:]
                last[key] = max(last.get(key, 0), stamp)
                streams_seen[key] = streams_seen.get(key, 0) + 1
        sock.close()
    print(json.dumps({"last": last, "seen": streams_seen}), flush=True)


# --- the run -----------------------------------------------------------------------------------

def _spawn(*args: str, source: str | None = None) -> subprocess.Popen[str]:
    """A process of the benchmark; ``source``: a tree whose ``agentproxy`` (and tests' backend) it imports."""
    path = os.pathsep.join([source, ROOT] if source else [ROOT])
    # Run in the tree: ``-m`` puts the working directory first on the module path.
    return subprocess.Popen([sys.executable, "-m", "benchmarks.events", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path},
                            cwd=source or ROOT)


def _line(proc: subprocess.Popen[str], expected: str) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith(expected):
        raise SystemExit(f"expected {expected!r} from {proc.args!r}, got {line!r}")
    return line


def _say(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _mib(proc: psutil.Process) -> float:
    return proc.memory_info().rss / (1 << 20)


def one_round(server: subprocess.Popen[str], url: str, subscribers: int, changes: int,
              rate: float) -> dict[str, Any]:
    """``changes`` changes with ``subscribers`` streams open: CPU, memory, latency to the last one."""
    proxy = psutil.Process(server.pid)
    readers = []
    left = subscribers
    while left > 0:
        readers.append(_spawn("read", url, "--count", str(min(PER_READER, left))))
        left -= PER_READER
    for reader in readers:
        _line(reader, "ready")
    time.sleep(1.0)  # settled: every stream's first bytes are out
    rss_subscribed = _mib(proxy)
    cpu = _cpu(proxy)
    began = time.monotonic()
    _say(server, f"go {changes} {rate}")
    _line(server, "done")
    # The proxy may still be writing what it queued: done once it stays idle for a second.
    idle_since, seen_cpu = time.monotonic(), _cpu(proxy)
    while time.monotonic() - idle_since < 1.0:
        time.sleep(0.25)
        if _cpu(proxy) - seen_cpu > 0.02:
            idle_since, seen_cpu = time.monotonic(), _cpu(proxy)
    cpu_used, wall = _cpu(proxy) - cpu, time.monotonic() - began
    rss_after = _mib(proxy)
    last: dict[str, int] = {}
    seen: dict[str, int] = {}
    for reader in readers:
        _say(reader, "stop")
        result = json.loads(_line(reader, "{"))
        for key, stamp in result["last"].items():
            last[key] = max(last.get(key, 0), stamp)
        for key, n in result["seen"].items():
            seen[key] = seen.get(key, 0) + n
        reader.wait(timeout=60)
    latencies = sorted((stamp - int(key)) / 1e6 for key, stamp in last.items())
    complete = sum(1 for n in seen.values() if n == subscribers)
    return {"subscribers": subscribers, "changes": changes, "delivered_to_all": complete,
            "cpu_s": cpu_used, "cpu_ms_per_change": 1000 * cpu_used / changes, "cpu_share": cpu_used / wall,
            "rss_subscribed_mib": rss_subscribed, "rss_after_mib": rss_after,
            "p50_ms": statistics.median(latencies) if latencies else float("nan"),
            "p95_ms": latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
            "max_ms": latencies[-1] if latencies else float("nan")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.events", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    role_serve = sub.add_parser("serve")
    role_serve.add_argument("--agents", type=int, default=1000)
    role_read = sub.add_parser("read")
    role_read.add_argument("url")
    role_read.add_argument("--count", type=int, default=PER_READER)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--changes", type=int, default=0, help="status changes per round (default: one per agent)")
    parser.add_argument("--rate", type=float, default=200.0, help="changes a second")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of each kind (default: 1)")
    parser.add_argument("--compare", metavar="DIR",
                        help="also a proxy of the agentproxy in DIR (e.g. an earlier commit, `git archive`d), "
                             "interleaved with this one")
    args = parser.parse_args(argv)
    if args.role == "serve":
        asyncio.run(serve(args.agents))
        return
    if args.role == "read":
        read_many(args.url, args.count)
        return
    changes = args.changes or args.agents
    sources = {"": None} if not args.compare else {"before": args.compare, "after": None}
    servers = {label: _spawn("serve", "--agents", str(args.agents), source=source) for label, source in sources.items()}
    rounds: list[tuple[str, dict[str, Any]]] = []
    try:
        urls = {}
        for label, server in servers.items():
            _, port, imported = _line(server, "ready").split(maxsplit=2)
            expected = os.path.join(sources[label] or ROOT, "agentproxy", "__init__.py")
            if os.path.realpath(imported) != os.path.realpath(expected):
                raise SystemExit(f"the {label or 'proxy'} server imported {imported}, not {expected}")
            urls[label] = f"http://127.0.0.1:{port}/events"
        rss_idle = {label: _mib(psutil.Process(server.pid)) for label, server in servers.items()}
        # Interleaved, so that every server sees the same machine: 1 subscriber, then the many, --repeat times.
        for _ in range(args.repeat):
            for n in (1, args.subscribers):
                for label, server in servers.items():
                    rounds.append((label, one_round(server, urls[label], n, changes, args.rate)))
    finally:
        for server in servers.values():
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    load = open("/proc/loadavg").read().split()[:3]
    print(f"/events: {args.agents} agents, {changes} changes at {args.rate:g}/s; load average {' '.join(load)}")
    print("proxy RSS with the agents alone: " + ", ".join(f"{label or 'proxy'} {mib:.1f} MiB"
                                                           for label, mib in rss_idle.items()))
    print(f"{'proxy':<7} {'subscribers':>11} {'to all':>7} {'CPU s':>7} {'ms/change':>9} {'CPU share':>9} "
          f"{'RSS subscribed':>14} {'RSS after':>9} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}")
    for label, r in rounds:
        print(f"{label or '-':<7} {r['subscribers']:>11} {r['delivered_to_all']:>7} {r['cpu_s']:>7.2f} "
              f"{r['cpu_ms_per_change']:>9.3f} {r['cpu_share']:>9.2f} {r['rss_subscribed_mib']:>14.1f} "
              f"{r['rss_after_mib']:>9.1f} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f} {r['max_ms']:>7.1f}")

    def per_change(label: str, subscribers: int) -> float:
        return statistics.median(r["cpu_ms_per_change"] for lb, r in rounds if lb == label and r["subscribers"] == subscribers)
    for label in servers:
        print(f"CPU per change{f' ({label})' if label else ''}, {args.subscribers} subscribers against 1: "
              f"{per_change(label, args.subscribers) / per_change(label, 1):.1f}x")
    if args.compare:
        print(f"CPU per change with {args.subscribers} subscribers, after against before: "
              f"{per_change('after', args.subscribers) / per_change('before', args.subscribers):.2f}")


if __name__ == "__main__":
    main()
