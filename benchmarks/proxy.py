"""Benchmark of the agent API proxy against direct access and two other proxies, side by side.

One real agentapi v0.12.1 (the echo demo agent, started as agentproxy starts agents) and
the ways to it, all on 127.0.0.1 (``benchmarks/paths.py``): direct, agentproxy,
configurable-http-proxy 5.3.0, the Go agentapi-proxy v1.73.0, and two floors that are not
proxies (byte relays on uvloop and in C: what one hop costs here before any proxy work).
Each run starts them afresh and measures, path by path in an order rotated from run to run:

1. ``GET /status`` at 1 connection: p50 latency (wrk 4.1, one thread), and what the path adds
   to direct's p50 in the same run;
2. ``GET /status`` at 32 connections: requests/s, and their ratio to direct's; and the CPU time
   the path's own process spends per request (for direct: agentapi's), which other load on
   the machine sways far less than requests/s;
3. Server-Sent Events: two readers (``benchmarks/streams.py``), one direct and one through the
   path (for direct: a second direct one), hold agentapi's ``/events`` while messages are sent
   to the agent; each event is
   stamped on arrival in both, and the path's delay is the difference (agentapi does not stamp
   its events). An event is *held back* when it reaches the proxied reader only after the
   direct reader got the next one, which agentapi wrote at least 1 ms later; *lost* when it
   never arrives. Where packets can be captured (root), the path's *hop* is measured too:
   from agentapi's packet to the path to the path's packet to its reader, both stamped by the
   kernel (``benchmarks/capture.py``), which leaves the readers' wake-ups out;
4. memory: the growth of the path's process RSS (its own, not its children's) while 1000
   idle event streams go through it, measured first, on fresh processes.

Every figure is the median of ``--runs`` runs (3). Every load is bounded in time (``--duration``
seconds) and count (``--max-requests``). A path that cannot be started is reported as missing.
wrk comes from Debian (``bin/just wrk``); without it the load rows say so.

Usage: ``python -m benchmarks.proxy [--runs 3] [--duration 5] [--messages 10] [--streams 1000]
[--paths direct agentproxy chp peer relay socat] [--ports FIRST-LAST]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from testenv.ports import free_block

from .capture import LoopbackCapture, flow_events
from .paths import NAMES, ORDER, Ports, Target, start_all

HERE = Path(__file__).resolve().parent
STREAMS = HERE / "streams.py"
SEPARATE_NS = 1_000_000
"""Events agentapi wrote this far apart (1 ms) are separate: a path that delivers the first only
once the second has arrived directly held it back."""
SETTLE = 1.0
"""Seconds of quiet before each path's events: the load before leaves the machine busy for a
while (the direct reader saw the same outliers), which would show as the largest delays."""
STABLE_LIMIT = 60.0
"""Seconds the agent may take to answer a message (a bound, not a measurement)."""

WRK_SCRIPT = """
local authorization = os.getenv("BENCH_AUTHORIZATION") or ""
if authorization ~= "" then wrk.headers["Authorization"] = authorization end
local count, limit = 0, tonumber(os.getenv("BENCH_MAX_REQUESTS") or "0")
response = function(status, headers, body)
  count = count + 1
  if limit > 0 and count >= limit then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests": %d, "seconds": %f, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# --- measurements ----------------------------------------------------------------------------------

def wrk(url: str, connections: int, seconds: float, max_requests: int, script: Path,
        authorization: str | None = None) -> dict[str, Any]:
    """One wrk run: requests/s and latency percentiles (ms); every request with the ``Authorization``
    header ``authorization`` when given (passed in the environment, so no command line shows it)."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
                          "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60,
                         env={**os.environ, "BENCH_MAX_REQUESTS": str(max_requests),
                              "BENCH_AUTHORIZATION": authorization or ""})
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {(out.stderr or out.stdout).strip()[-300:]}")
    r = json.loads(line[6:])
    return {"rps": r["requests"] / r["seconds"], "p50": r["p50_us"] / 1000, "p99": r["p99_us"] / 1000,
            "errors": r["errors"], "requests": r["requests"]}


def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(STREAMS), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def _status(base: str) -> str:
    with urllib.request.urlopen(f"{base}/status", timeout=10) as answer:
        return json.loads(answer.read())["status"]


def _wait_stable(base: str) -> None:
    deadline = time.monotonic() + STABLE_LIMIT
    while _status(base) != "stable":
        if time.monotonic() > deadline:
            raise RuntimeError("the agent did not become stable")
        time.sleep(0.02)


def _say(base: str, text: str) -> None:
    request = urllib.request.Request(f"{base}/message", method="POST",
                                     data=json.dumps({"content": text, "type": "user"}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=STABLE_LIMIT) as answer:
        answer.read()


def sse(direct: str, proxied: str, messages: int, label: str) -> dict[str, Any]:
    """Events of ``messages`` messages read directly and through a path: delays, events held back
    and, where packets can be captured, the path's hop (see ``benchmarks/capture.py``)."""
    readers = [_spawn("events", f"{direct}/events"), _spawn("events", f"{proxied}/events")]
    capture, packets, reader_ports = None, None, []
    try:
        for reader in readers:
            word, _, port = reader.stdout.readline().strip().partition(" ")  # type: ignore[union-attr]  # made with PIPE
            if word != "ready":
                raise RuntimeError(f"an event reader did not start ({label})")
            reader_ports.append(int(port))
        _wait_stable(direct)
        time.sleep(0.3)  # the replay of the conversation is in
        capture = _start_capture()
        since = time.monotonic_ns()
        for n in range(messages):
            _wait_stable(direct)
            _say(direct, f"{label} message {n}")
        _wait_stable(direct)
        time.sleep(0.3)
        if capture is not None:
            packets, capture = capture.stop(), None
        got = []
        for reader in readers:
            reader.stdin.write("stop\n")  # type: ignore[union-attr]  # made with PIPE
            reader.stdin.flush()  # type: ignore[union-attr]  # made with PIPE
            got.append(json.loads(reader.stdout.readline()))  # type: ignore[union-attr]  # made with PIPE
    finally:
        if capture is not None:
            capture.stop()
        for reader in readers:
            _end(reader)
    direct_events = [(t, e) for t, e in got[0] if t >= since]
    proxied_events = [(t, e) for t, e in got[1] if t >= since]
    result = match_events(direct_events, proxied_events)
    agentapi, path = _port(direct), _port(proxied)
    if packets is not None and path != agentapi:
        # The path's upstream stream: agentapi's events to any port but the direct reader's.
        into = flow_events(packets, agentapi, not_to=frozenset({reader_ports[0]}))
        out = flow_events(packets, path, destination=reader_ports[1])
        result["hops"] = match_events(into, out)["delays"]
    return result


def _start_capture() -> LoopbackCapture | None:
    """A capture of the loopback's packets, or None where this process may not capture them."""
    try:
        return LoopbackCapture.start()
    except OSError:  # PermissionError without CAP_NET_RAW; no packet sockets at all
        return None


def _port(base: str) -> int:
    return urlsplit(base).port or 80


def match_events(direct: list[tuple[int, str]], proxied: list[tuple[int, str]]) -> dict[str, Any]:
    """Pair the same events (equal text, in order) and compare their arrival times."""
    arrivals: dict[str, list[int]] = {}
    for stamp, text in proxied:
        arrivals.setdefault(text, []).append(stamp)
    delays, lost, held = [], 0, 0
    for i, (stamp, text) in enumerate(direct):
        if not arrivals.get(text):
            lost += 1
            continue
        arrived = arrivals[text].pop(0)
        delays.append((arrived - stamp) / 1e6)
        if i + 1 < len(direct) and arrived >= direct[i + 1][0] >= stamp + SEPARATE_NS:
            held += 1
    return {"events": len(direct), "delays": delays, "lost": lost, "held": held}


def idle_streams(target: Target, count: int) -> dict[str, Any]:
    """RSS growth (MB) of the path's process while ``count`` idle event streams go through it."""
    process = psutil.Process(target.pid)
    before = process.memory_info().rss
    holder = _spawn("idle", f"{target.base}/events", "--count", str(count))
    try:
        opened = json.loads(holder.stdout.readline())  # type: ignore[union-attr]  # made with PIPE
        settle = 1.0 if count >= 100 else 0.1
        time.sleep(settle)  # let the process settle with the streams open
        after = process.memory_info().rss
        holder.stdin.write("close\n")  # type: ignore[union-attr]  # made with PIPE
        holder.stdin.flush()  # type: ignore[union-attr]  # made with PIPE
        holder.wait(timeout=60)
    finally:
        _end(holder)
    time.sleep(settle)  # let the streams' upstream side close before the next path
    return {"mb": (after - before) / 1e6, "open": opened["open"], "failed": opened["failed"]}


def _end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- one run ---------------------------------------------------------------------------------------

def _touch(target: Target) -> None:
    """A light warm-up (a few requests, a few streams opened and closed): what every path does
    once before anything is measured."""
    assert target.base is not None  # a started path
    for _ in range(20):
        _status(target.base)
    idle_streams(target, 5)


def one_run(index: int, args: argparse.Namespace, script: Path | None) -> dict[str, Any]:
    """Start every path afresh and measure each, in an order rotated by ``index``.

    Memory comes first, while the processes are fresh: a load leaves heaps grown that later
    streams would reuse unseen. SSE comes last, as its messages lengthen the conversation
    every new stream is sent first.
    """
    first, last = args.ports
    with start_all(Ports(first, last), tuple(args.paths), args.loop) as running:
        present = [k for k in ORDER if k in running.paths and running.paths[k].missing is None]
        order = present[index % len(present):] + present[:index % len(present)]
        print(f"run {index + 1}: {' '.join(order)}", file=sys.stderr, flush=True)
        result: dict[str, Any] = {"missing": {k: t.missing for k, t in running.paths.items() if t.missing},
                                  "latency": {}, "throughput": {}, "sse": {}, "rss": {}}
        for key in order:
            _touch(running.paths[key])
        for key in order:
            if args.streams and running.paths[key].pid:
                result["rss"][key] = idle_streams(running.paths[key], args.streams)
        if script is not None:
            for key in order:  # warm-up: connections, pools, caches
                wrk(f"{running.paths[key].base}/status", 32, 1, args.max_requests, script)
            for name, connections in (("latency", 1), ("throughput", 32)):
                for key in order:
                    pid = running.paths[key].pid
                    before = psutil.Process(pid).cpu_times() if pid else None
                    result[name][key] = figures = wrk(f"{running.paths[key].base}/status", connections,
                                                      args.duration, args.max_requests, script)
                    if before is not None:
                        # CPU time of the path's own process per request: what it costs, little
                        # swayed by whatever else the machine runs (unlike requests/s).
                        after = psutil.Process(pid).cpu_times()
                        used = (after.user - before.user) + (after.system - before.system)
                        figures["cpu_us"] = used / max(1, figures["requests"]) * 1e6
        direct = running.paths["direct"].base
        for key in order:
            # For direct itself: a second direct reader, i.e. how far apart agentapi delivers
            # one event to two of its streams (the noise floor of this measurement).
            if args.messages:
                time.sleep(SETTLE)
                base = running.paths[key].base
                assert direct is not None and base is not None  # started paths
                result["sse"][key] = sse(direct, base, args.messages, f"run {index} {key}")
        return result


# --- the table ---------------------------------------------------------------------------------------

def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str, sign: bool = False) -> str:
    return "-" if value is None else f"{value:{'+' if sign else ''}{spec}}"


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per path: medians over the runs of each figure (ratios and differences taken within a run)."""
    return {key: _summary_row(runs, key) for key in ORDER}


def _summary_row(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    def per(name: str, fn: Callable[[dict[str, Any]], float]) -> list[float]:
        return [fn(r) for r in runs if key in r[name] and "direct" in r[name]]

    sse_runs = [r["sse"][key] for r in runs if key in r["sse"]]
    return {
        "p50": _median(per("latency", lambda r: r["latency"][key]["p50"])),
        "added": _median(per("latency", lambda r: r["latency"][key]["p50"] - r["latency"]["direct"]["p50"])),
        "rps": _median(per("throughput", lambda r: r["throughput"][key]["rps"])),
        "ratio": _median(per("throughput", lambda r: r["throughput"][key]["rps"] / r["throughput"]["direct"]["rps"])),
        "cpu": _median([r["throughput"][key]["cpu_us"] for r in runs
                        if key in r["throughput"] and "cpu_us" in r["throughput"][key]]),
        "errors": sum(r[n][key]["errors"] for r in runs for n in ("latency", "throughput") if key in r[n]),
        "sse": _median([statistics.median(s["delays"]) for s in sse_runs if s["delays"]]),
        "sse_max": max((max(s["delays"]) for s in sse_runs if s["delays"]), default=None),
        "hop": _median([statistics.median(s["hops"]) for s in sse_runs if s.get("hops")]),
        "events": sum(s["events"] for s in sse_runs),
        "held": sum(s["held"] for s in sse_runs),
        "lost": sum(s["lost"] for s in sse_runs),
        "rss": _median([r["rss"][key]["mb"] for r in runs if key in r["rss"]]),
        "streams": min((r["rss"][key]["open"] for r in runs if key in r["rss"]), default=None),
        "missing": next((r["missing"][key] for r in runs if key in r["missing"]), None),
    }


def report(rows: dict[str, dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> None:
    print(f"agent API proxy ({args.loop} loop): {len(args.paths)} paths to one agentapi v0.12.1 (echo agent), "
          f"{os.cpu_count()} CPUs shared by all; median of {args.runs} run(s), order rotated")
    print(f"GET /status: wrk 4.1 -t1, {args.duration:g} s (at most {args.max_requests} requests) per figure; "
          f"SSE: {args.messages} message(s) per path and run; memory: {args.streams} idle event streams")
    print()
    head = (f"{'path':<34}{'p50 @1':>8}{'added':>9}{'req/s @32':>11}{'÷direct':>9}{'CPU @32':>9}{'SSE added':>11}"
            f"{'SSE hop':>9}{'held/lost':>11}{'RSS +MB':>9}")
    print(head)
    print(f"{'':<34}{'ms':>8}{'ms':>9}{'':>11}{'':>9}{'µs/req':>9}{'p50 ms':>11}{'p50 ms':>9}{'of events':>11}"
          f"{'streams':>9}")
    for key in ORDER:
        if key not in args.paths:
            continue
        r = rows[key]
        if r["missing"] and r["p50"] is None:
            print(f"{NAMES[key]:<34}missing: {r['missing']}")
            continue
        direct = key == "direct"
        held = "-" if not r["events"] else f"{r['held']}/{r['lost']} of {r['events']}"
        sse_text = ("±" + _fmt(abs(r["sse"]), ".3f")) if direct and r["sse"] is not None else _fmt(r["sse"], ".3f", True)
        print(f"{NAMES[key]:<34}{_fmt(r['p50'], '.3f'):>8}{'-' if direct else _fmt(r['added'], '.3f', True):>9}"
              f"{_fmt(r['rps'], ',.0f'):>11}{_fmt(r['ratio'], '.2f'):>9}{_fmt(r['cpu'], '.0f'):>9}"
              f"{sse_text:>11}{_fmt(r['hop'], '.3f', True):>9}{held:>11}{_fmt(r['rss'], '.1f', True):>9}")
        if r["errors"]:
            notes.append(f"{NAMES[key]}: {r['errors']} failed requests under load")
        if r["streams"] is not None and r["streams"] < args.streams:
            notes.append(f"{NAMES[key]}: only {r['streams']} of {args.streams} event streams opened")
        if r["sse_max"] is not None and not direct:
            notes.append(f"{NAMES[key]}: largest SSE delay {r['sse_max']:.3f} ms")
    if "direct" in rows and rows["direct"]["sse"] is not None:
        notes.append("direct's SSE figure: the gap between two direct readers of the same event, the noise "
                     "floor of the SSE column")
    if any(r["events"] and r["hop"] is None for key, r in rows.items() if key != "direct" and key in args.paths):
        notes.append("SSE hop: no packet capture here (it needs CAP_NET_RAW, i.e. root), so no hop figures")
    elif any(r["hop"] is not None for r in rows.values()):
        notes.append("SSE hop: from agentapi's packet to the path to the path's packet to its reader, both "
                      "stamped by the kernel (the path alone, without the readers' wake-ups)")
    if "direct" in rows and rows["direct"]["rss"] is not None:
        notes.append("direct's RSS growth is agentapi's own")
    for note in notes:
        print(f"  {note}")


def add_load_arguments(parser: argparse.ArgumentParser, ports: int) -> None:
    """The arguments of a benchmark of wrk runs through the paths: runs, seconds and requests per
    figure, ports (``ports`` free ones by default, see :func:`port_range`), agentproxy's loop, JSON."""
    parser.add_argument("--runs", type=int, default=3, help="runs, each with fresh processes (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load figure (default 5)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests per load figure at most")
    parser.add_argument("--ports", help=f"ports to listen on, FIRST-LAST (default: {ports} free ones, testenv.ports)")
    parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto",
                        help="agentproxy's event loop (default auto: uvloop where there is one)")
    parser.add_argument("--json", help="also write every run's figures to this file")


def port_range(value: str | None, count: int) -> tuple[int, int]:
    """The ports of ``--ports FIRST-LAST``, or ``count`` free ones (:func:`testenv.ports.free_block`)."""
    if value is None:
        return free_block(count, mostly=True)
    first, _, last = value.partition("-")
    return int(first), int(last or first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser, ports=100)
    parser.add_argument("--messages", type=int, default=10, help="messages per path and run for SSE (default 10)")
    parser.add_argument("--streams", type=int, default=1000, help="idle event streams for memory (default 1000)")
    parser.add_argument("--paths", nargs="+", choices=ORDER, default=list(ORDER))
    args = parser.parse_args()
    args.ports = port_range(args.ports, 100)
    if "direct" not in args.paths:
        args.paths.insert(0, "direct")
    notes = []
    script = None
    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-wrk-") as tmp:
        if shutil.which("wrk"):
            script = Path(tmp) / "report.lua"
            script.write_text(WRK_SCRIPT)
        else:
            notes.append("wrk is missing (bin/just wrk installs it): no load figures")
        runs = [one_run(i, args, script) for i in range(args.runs)]
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    report(summarise(runs), args, notes)


if __name__ == "__main__":
    main()
