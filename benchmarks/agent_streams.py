"""Benchmark: many agents, each with an open ``/events`` stream through the proxy and a
message every few seconds.

Three kinds of process, each run by this module:

- ``upstream``: one aiohttp server that stands for every agent's agentapi (a thousand real
  agentapis are beyond a 2-core machine: an idle one takes about 2 % of a core). Every ``GET
  /events?at=T`` is a Server-Sent Events stream that, from a random moment within
  ``--interval`` seconds of the monotonic time T (every stream of the round open by then),
  sends ``--messages`` ``message_update`` events ``--interval`` seconds apart, each stamped
  with ``CLOCK_MONOTONIC`` (one clock for every process of the machine) and numbered, then
  stays open.
- ``proxy``: the API as ``agentproxy serve`` runs it (:func:`~agentproxy.api.serve.run_server`,
  its fast path and event loop) over an in-memory backend of ``--agents`` ready agents, each
  of them proxied to the upstream.
- ``read``: holds some of the streams, stamps every read, and reports each event's delay (the
  read's stamp less the event's) and the events each stream got, in order or not.

A round opens one stream per agent (at most 50 connecting at a time, within
``--connect-timeout`` seconds, before the first message is due) and reads until every stream has
had its messages or the round's deadline passed. The baseline round reads the
upstream directly; the proxied round reads ``/sessions/S/agents/A/api/events`` of every
agent. Reported: events lost, duplicated or out of order; the delay p50 / p99 / max of each
round and what the proxy adds to them; the proxy's RSS with the agents alone, with every
stream open, and after the messages; its CPU per event.

Usage: ``python -m benchmarks.agent_streams [--agents 1000] [--messages 20] [--interval 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.events import _cpu, _line, _mib
from benchmarks.streams import _request, parse_events

ROOT = str(Path(__file__).resolve().parents[1])
"""The repository, where the processes of the benchmark find its modules and the tests' backend."""
PER_READER = 250
"""Streams one reader process holds."""
CONNECTING = 50
"""Streams a reader connects at a time."""
SESSIONS = 10
"""Sessions the agents are spread over."""


# --- the upstream: every agent's agentapi ------------------------------------------------------

async def serve_upstream(messages: int, interval: float) -> None:
    """The ``upstream`` role: prints ``ready PORT``, serves until its standard input closes."""
    from aiohttp import web

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        first = float(request.query.get("at", time.monotonic())) + random.uniform(0.0, interval)
        try:
            for seq in range(messages):
                await asyncio.sleep(max(0.0, first + seq * interval - time.monotonic()))
                data = json.dumps({"seq": seq, "t": time.monotonic_ns(), "message": "x" * 200})
                await response.write(f"event: message_update\ndata: {data}\n\n".encode())
            await asyncio.Event().wait()  # open, silent, until the reader goes
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    app = web.Application()
    app.router.add_get("/events", events)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    print("ready", runner.addresses[0][1], flush=True)
    await _until_stdin_closes()
    await runner.cleanup()


# --- the proxy ---------------------------------------------------------------------------------

async def serve_proxy(agents: int, upstream: str) -> None:
    """The ``proxy`` role: prints ``ready PORT``, serves until its standard input closes."""
    from agentproxy.api.serve import run_server
    from agentproxy.settings import load_settings
    from agentproxy.spec import build_spec
    from tests.unit.api.memory_backend import MemoryBackend

    settings = load_settings(None, ["agents.max_per_session=0", "agents.max_per_owner=0"], environ={}).settings
    backend = MemoryBackend(upstream=upstream)  # every agent ready, proxied to the upstream
    await backend.start()
    for n in range(agents):
        await backend.create(build_spec(settings, f"s{n % SESSIONS}", f"a{n}", "echo"))
    stop = asyncio.Event()

    def listening(addresses: list[Any]) -> None:
        print("ready", addresses[0][1], flush=True)

    async def until_told() -> None:
        await _until_stdin_closes()
        stop.set()

    told = asyncio.ensure_future(until_told())
    try:
        await run_server(settings, backend, host="127.0.0.1", port=0, stop=stop, on_listening=listening,
                         handle_signals=False, shutdown_timeout=1.0)
    finally:
        told.cancel()


async def _until_stdin_closes() -> None:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass


# --- a reader of many streams ------------------------------------------------------------------

def read_streams(urls: list[str], messages: int, deadline: float) -> dict[str, Any]:
    """The ``read`` role: one stream of each URL, read until each had ``messages`` events or
    ``deadline`` (monotonic seconds) passed; each event's delay, and each stream's numbers."""
    streams, failed = _open(urls)
    print("open", time.monotonic(), flush=True)
    _read(streams, messages, deadline)
    return {"streams": len(streams), "failed": failed, **_findings(streams, messages)}


class _Stream:
    """One open stream: its socket, its framing, and its reads, each stamped when it returned."""

    def __init__(self, sock: socket.socket, chunked: bool, body: bytes) -> None:
        self.sock = sock
        self.chunked = chunked
        self.reads: list[tuple[int, bytes]] = [(time.monotonic_ns(), body)] if body else []
        self.events = 0
        """``message_update`` events seen in the reads so far (a guess: a read may split one)."""


def _open(urls: list[str]) -> tuple[list[_Stream], int]:
    """A stream of each URL (at most :data:`CONNECTING` connecting at a time); those that
    answered 200, and how many did not."""
    streams: list[_Stream] = []
    failed = 0
    for start in range(0, len(urls), CONNECTING):
        batch = []
        for url in urls[start:start + CONNECTING]:
            host, port, request = _request(url)
            try:
                sock = socket.create_connection((host, port), timeout=30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(request)
            except OSError:
                failed += 1
                continue
            batch.append(sock)
        for sock in batch:
            data = b""
            while b"\r\n\r\n" not in data and (more := sock.recv(65536)):
                data += more
            head, _, body = data.partition(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
                failed += 1
                sock.close()
                continue
            sock.setblocking(False)
            streams.append(_Stream(sock, b"transfer-encoding: chunked" in head.lower(), body))
    return streams, failed


def _read(streams: list[_Stream], messages: int, deadline: float) -> None:
    """Read every stream until it had ``messages`` events, closed, or ``deadline`` passed.
    Reads are only stamped and kept here; they are parsed afterwards."""
    selector = selectors.DefaultSelector()
    for stream in streams:
        selector.register(stream.sock, selectors.EVENT_READ, stream)
    waiting = len(streams)
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
            stream = key.data
            stamp = time.monotonic_ns()
            try:
                raw = stream.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if raw:
                stream.reads.append((stamp, raw))
                stream.events += raw.count(b"event: message_update")
            if not raw or (stream.events >= messages and raw.endswith((b"\n\n", b"\r\n"))):
                selector.unregister(stream.sock)
                waiting -= 1
    selector.close()


def _findings(streams: list[_Stream], messages: int) -> dict[str, Any]:
    """Each event's delay (its read's stamp less its own), and the events lost, duplicated or
    out of order over every stream."""
    delays: list[int] = []
    events = lost = duplicated = disordered = 0
    for stream in streams:
        seqs = []
        for stamp, event in parse_events(stream.reads, stream.chunked):
            payload = next((line[6:] for line in event.split("\n") if line.startswith("data: ")), None)
            if payload is not None:
                data = json.loads(payload)
                seqs.append(data["seq"])
                delays.append(stamp - data["t"])
        stream.sock.close()
        events += len(seqs)
        lost += len(set(range(messages)) - set(seqs))
        duplicated += len(seqs) - len(set(seqs))
        disordered += sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b <= a)
    return {"events": events, "lost": lost, "duplicated": duplicated, "disordered": disordered,
            "delays_ns": delays}


# --- the run -----------------------------------------------------------------------------------

def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.agent_streams", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)


def _end(proc: subprocess.Popen[str]) -> None:
    """End a process of the benchmark: its standard input closed, then SIGTERM, then SIGKILL."""
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    for signal_it in (None, proc.terminate, proc.kill):
        if signal_it is not None:
            signal_it()
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def one_round(urls: list[str], args: argparse.Namespace, proxy: psutil.Process | None) -> dict[str, Any]:
    """Every URL's stream open at once and read to its last message: the readers' findings merged,
    and the proxy's RSS and CPU (when there is one)."""
    at = time.monotonic() + args.connect_timeout
    deadline = at + args.messages * args.interval + args.grace
    readers = []
    try:
        for start in range(0, len(urls), PER_READER):
            reader = _spawn("read", "--messages", str(args.messages), "--deadline", repr(deadline),
                            *(f"{url}?at={at!r}" for url in urls[start:start + PER_READER]))
            readers.append(reader)
        cpu0 = _cpu(proxy) if proxy is not None else 0.0
        opened = max(float(_line(reader, "open").split()[1]) for reader in readers)
        if opened > at:  # events read late for the reader's own sake would count as the path's delay
            raise SystemExit(f"the streams took {opened - at + args.connect_timeout:.0f} s to open, more than "
                             f"--connect-timeout {args.connect_timeout:g}: give it more")
        rss_open = _mib(proxy) if proxy is not None else 0.0
        merged: dict[str, Any] = {"streams": 0, "failed": 0, "events": 0, "lost": 0, "duplicated": 0,
                                  "disordered": 0, "delays_ns": []}
        for reader in readers:
            result = json.loads(_line(reader, "{"))
            for key, value in result.items():
                merged[key] += value
    finally:
        for reader in readers:
            _end(reader)
    if proxy is not None:
        merged.update(cpu_s=_cpu(proxy) - cpu0, rss_open_mib=rss_open, rss_after_mib=_mib(proxy))
    return merged


def _ms(values_ns: list[int], q: float) -> float:
    ordered = sorted(values_ns)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] / 1e6 if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.agent_streams", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role")
    role_upstream = sub.add_parser("upstream")
    role_upstream.add_argument("--messages", type=int, required=True)
    role_upstream.add_argument("--interval", type=float, required=True)
    role_proxy = sub.add_parser("proxy")
    role_proxy.add_argument("--agents", type=int, required=True)
    role_proxy.add_argument("upstream")
    role_read = sub.add_parser("read")
    role_read.add_argument("--messages", type=int, required=True)
    role_read.add_argument("--deadline", type=float, required=True)
    role_read.add_argument("urls", nargs="+")
    parser.add_argument("--agents", type=int, default=1000, help="agents, each with a stream (default 1000)")
    parser.add_argument("--messages", type=int, default=20, help="messages per stream (default 20)")
    parser.add_argument("--interval", type=float, default=3.0, help="seconds between a stream's messages (default 3)")
    parser.add_argument("--connect-timeout", type=float, default=20.0,
                        help="seconds every stream of a round may take to open, before the first message "
                             "is due (default 20)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds after the last message is due before a round ends (default 10)")
    args = parser.parse_args(argv)
    if args.role == "upstream":
        from agentproxy.api.serve import event_loop_runner
        with event_loop_runner() as runner:
            runner.run(serve_upstream(args.messages, args.interval))
        return 0
    if args.role == "proxy":
        from agentproxy.api.serve import event_loop_runner
        with event_loop_runner() as runner:
            runner.run(serve_proxy(args.agents, args.upstream))
        return 0
    if args.role == "read":
        print(json.dumps(read_streams(args.urls, args.messages, args.deadline)), flush=True)
        return 0
    if min(args.agents, args.messages) < 1 or args.interval <= 0:
        parser.error("--agents and --messages must be at least 1, --interval above 0")
    return run(args)


def run(args: argparse.Namespace) -> int:
    upstream = _spawn("upstream", "--messages", str(args.messages), "--interval", str(args.interval))
    proxy_proc: subprocess.Popen[str] | None = None
    try:
        upstream_port = int(_line(upstream, "ready").split()[1])
        proxy_proc = _spawn("proxy", "--agents", str(args.agents), f"http://127.0.0.1:{upstream_port}")
        proxy_port = int(_line(proxy_proc, "ready").split()[1])
        proxy = psutil.Process(proxy_proc.pid)
        time.sleep(1.0)
        rss_agents = _mib(proxy)
        direct = one_round([f"http://127.0.0.1:{upstream_port}/events"] * args.agents, args, None)
        proxied = one_round([f"http://127.0.0.1:{proxy_port}/sessions/s{n % SESSIONS}/agents/a{n}/api/events"
                             for n in range(args.agents)], args, proxy)
    finally:
        for proc in (proxy_proc, upstream):
            if proc is not None:
                _end(proc)
    expected = args.agents * args.messages
    rows = [("machine", f"{os.cpu_count()} cores, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"),
            ("streams, messages each, seconds apart", f"{args.agents}, {args.messages}, {args.interval:g}")]
    for name, result in (("direct", direct), ("through the proxy", proxied)):
        rows += [(f"{name}: streams open / failed", f"{result['streams']} / {result['failed']}"),
                 (f"{name}: events received of {expected} / lost / duplicated / out of order",
                  f"{result['events']} / {result['lost']} / {result['duplicated']} / {result['disordered']}"),
                 (f"{name}: delay p50 / p99 / max",
                  " / ".join(f"{_ms(result['delays_ns'], q):.2f}" for q in (0.5, 0.99, 1.0)) + " ms")]
    rows += [("added by the proxy: p50 / p99",
              f"{_ms(proxied['delays_ns'], 0.5) - _ms(direct['delays_ns'], 0.5):+.2f} / "
              f"{_ms(proxied['delays_ns'], 0.99) - _ms(direct['delays_ns'], 0.99):+.2f} ms"),
             ("proxy RSS: the agents alone / every stream open / after the messages",
              f"{rss_agents:.1f} / {proxied['rss_open_mib']:.1f} / {proxied['rss_after_mib']:.1f} MiB "
              f"({(proxied['rss_open_mib'] - rss_agents) * 1024 / max(1, proxied['streams']):.1f} KiB a stream)"),
             ("proxy CPU per event relayed (opening the streams included)",
              f"{proxied['cpu_s'] / max(1, proxied['events']) * 1e6:.0f} µs ({proxied['cpu_s']:.1f} s in all)")]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", flush=True)
    return 0 if proxied["lost"] == 0 and proxied["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
