"""The CPU the k8s client's transport costs this process: kr8s's ``call_api`` (httpx, httpcore,
anyio's TLS stream), as the k8s backend sent its calls and read its watches before, against its
own transport over aiohttp (``agentproxy/backends/k8s/transport.py``), in the same run.

A server process on 127.0.0.1 answers as the API server does (TLS with the cluster's CA, a client
certificate required):

- *calls*: server-side applies (``PATCH``, a ConfigMap as the templates render it, answered with
  the object as the server stores it), ``--concurrency`` at once, as a create's applies are;
- *watch events*: chunked lines of JSON, one event at a time with ``--interval`` seconds between
  (changes of a cluster at work arrive one by one, so each costs a read of its own); each event
  is a pod as the templates render it, with what the server adds (``benchmarks/synthetic.py``).

This process makes both with the credentials kr8s loads from a kubeconfig, every answer parsed,
rounds interleaved, and reports its own CPU time per call and per event (the server's is not
counted).

Usage: ``python -m benchmarks.transport [--calls 1000] [--concurrency 20] [--events 2000]
[--interval 0.005] [--rounds 3] [--loop auto]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import kr8s.asyncio
from aiohttp import web

from agentproxy.api.serve import LOOPS, event_loop_runner
from agentproxy.backends.k8s.client import Client
from agentproxy.render import render_agent
from agentproxy.settings import Settings, load_settings
from agentproxy.spec import build_spec
from testenv.apiclient import client_kubeconfig
from testenv.pki import write_pki

from .synthetic import agent_objects

PATH = "/api/v1/namespaces/bench/pods"
APPLIED = "/api/v1/namespaces/bench/configmaps/agent-a1-config"
USER = "watcher"


def _settings() -> Settings:
    return load_settings(overrides=["k8s_mode.namespace=bench"], environ={}).settings


def _objects() -> dict[str, dict[str, Any]]:
    return agent_objects(_settings(), "s", "a1", 100)


def _event_line() -> bytes:
    return json.dumps({"type": "MODIFIED", "object": _objects()["Pod"]}, separators=(",", ":")).encode() + b"\n"


def _applied() -> dict[str, Any]:
    """The ConfigMap a create applies, as rendered (what the server stores adds its metadata)."""
    settings = _settings()
    return next(o for o in render_agent(settings, build_spec(settings, "s", "a1", "echo")) if o["kind"] == "ConfigMap")


# --- the server (a process of its own: its CPU is not this process's) ----------------------------

async def start_api_server(pki: Path, watch: Callable[[web.Request], Awaitable[web.StreamResponse]],
                           stored: bytes = b"{}") -> web.AppRunner:
    """An HTTPS server on 127.0.0.1 (a free port: ``runner.addresses``) that answers as an API
    server does what a watch and an apply ask: ``/version`` (kr8s's first call), ``watch`` at
    :data:`PATH`, and a ``PATCH`` of :data:`APPLIED` with ``stored`` (its body read whole), with
    the serving certificate :func:`~testenv.pki.write_pki` wrote into ``pki``, and a client
    certificate of its CA required."""
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"major": "1", "minor": "35", "gitVersion": "v1.35.0"})

    async def apply(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=stored, content_type="application/json")

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    tls.load_cert_chain(pki / "apiserver.crt", pki / "apiserver.key")
    tls.verify_mode = ssl.CERT_REQUIRED
    # Python 3.13's default context verifies strictly (RFC 5280 extensions the test CA's
    # certificates leave out); the API server it stands in for, in Go, does not.
    tls.verify_flags &= ~ssl.VERIFY_X509_STRICT
    app = web.Application()
    app.router.add_get(PATH, watch)
    app.router.add_patch(APPLIED, apply)
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls).start()
    return runner


def serve(pki: Path, events: int, interval: float) -> None:
    """Answer every watch with ``events`` events, ``interval`` seconds apart; print the port."""
    line = _event_line()

    async def watch(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(events):
            await response.write(line)
            await asyncio.sleep(interval)
        await response.write_eof()
        return response

    async def main() -> None:
        runner = await start_api_server(pki, watch, json.dumps(_objects()["ConfigMap"]).encode())
        print(runner.addresses[0][1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the two ways of calling and of reading ------------------------------------------------------

async def _calls_through_kr8s(api: Any, calls: int, concurrency: int) -> int:
    """Applies before: kr8s's ``call_api`` (httpx), the answer parsed."""
    body, gate = json.dumps(_applied()), asyncio.Semaphore(concurrency)
    base, _, url = APPLIED.lstrip("/").partition("/")

    async def one() -> None:
        async with gate, api.call_api("PATCH", version="", base=f"/{base}", url=url, content=body,
                                      params={"fieldManager": "bench", "force": "false"}, raise_for_status=False,
                                      headers={"Content-Type": "application/apply-patch+yaml"}) as response:
            response.json()
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls


async def _calls_through_client(client: Client, calls: int, concurrency: int) -> int:
    """Applies now: the k8s client's (aiohttp), the answer parsed."""
    obj, gate = _applied(), asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await client.apply(obj, field_manager="bench")
    await asyncio.gather(*(one() for _ in range(calls)))
    return calls


async def _through_kr8s(api: Any) -> int:
    """The read path before: kr8s's ``call_api`` stream and httpx's lines."""
    count = 0
    async with api.call_api("GET", version="", base="/api", url="v1/namespaces/bench/pods",
                            params={"watch": "1"}, stream=True) as response:
        async for line in response.aiter_lines():
            if line.strip():
                json.loads(line)
                count += 1
    return count


async def _through_client(client: Client) -> int:
    """The read path now: the k8s client's watch stream over aiohttp."""
    count = 0
    async with client.stream(PATH, {"watch": "1"}, read_timeout=30.0) as lines:
        async for line in lines:
            if line.strip():
                json.loads(line)
                count += 1
    return count


async def _cpu_each(run: Callable[[], Awaitable[int]], expected: int) -> float:
    """CPU seconds of this process per call or event ``run`` made or read."""
    cpu = time.process_time()
    count = await run()
    used = time.process_time() - cpu
    if count != expected:
        raise SystemExit(f"transport: {count} of {expected} done")
    return used / count


def _kubeconfig(directory: Path, port: int) -> Path:
    path = directory / "kubeconfig"
    path.write_text(client_kubeconfig(f"https://127.0.0.1:{port}", directory / "pki", USER))
    return path


CALLS = ("kr8s call_api (httpx), as before", "k8s client's call (aiohttp)")
WATCHES = ("kr8s stream (httpx), as before", "k8s client's watch stream (aiohttp)")


async def measure(args: argparse.Namespace, directory: Path) -> dict[str, list[float]]:
    """CPU seconds per call and per event of each way, one figure per round."""
    write_pki(directory / "pki", {USER: None})
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.transport", "--serve", str(directory / "pki"),
                               "--events", str(args.events), "--interval", str(args.interval)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        api = await kr8s.asyncio.api(kubeconfig=str(_kubeconfig(directory, port)))
        client = Client(api)
        ways: dict[str, tuple[Callable[[], Awaitable[int]], int]] = {
            CALLS[0]: (lambda: _calls_through_kr8s(api, args.calls, args.concurrency), args.calls),
            CALLS[1]: (lambda: _calls_through_client(client, args.calls, args.concurrency), args.calls),
            WATCHES[0]: (lambda: _through_kr8s(api), args.events),
            WATCHES[1]: (lambda: _through_client(client), args.events),
        }
        figures: dict[str, list[float]] = {name: [] for name in ways}
        try:
            for _ in range(args.rounds):
                for name, (run, expected) in ways.items():
                    figures[name].append(await _cpu_each(run, expected))
        finally:
            await client.close()
        return figures
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="applies of each way a round")
    parser.add_argument("--concurrency", type=int, default=20, help="applies under way at once")
    parser.add_argument("--events", type=int, default=2000, help="events of each watch")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between two events")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each way, interleaved")
    parser.add_argument("--loop", choices=LOOPS, default="auto",
                        help="this process's event loop, as `agentproxy serve --loop` (uvloop where there is one)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)  # the server process, given its PKI
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.events, args.interval)
        return
    with tempfile.TemporaryDirectory(prefix="transport-") as tmp, event_loop_runner(args.loop) as runner:
        figures = runner.run(measure(args, Path(tmp)))
        loop = type(runner.get_loop()).__module__.split(".")[0]
    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"the k8s client's transport, {args.rounds} rounds on {loop}'s event loop; this process's CPU, "
          "the server's apart")
    print(f"calls: {args.calls} server-side applies of a ConfigMap a round, {args.concurrency} at once")
    _rows(figures, medians, CALLS, "a call")
    print(f"watch events: {args.events} a watch, {args.interval:g} s apart, {len(_event_line())} bytes each")
    _rows(figures, medians, WATCHES, "an event")


def _rows(figures: dict[str, list[float]], medians: dict[str, float], ways: tuple[str, str], each: str) -> None:
    for name in ways:
        rounds = ", ".join(f"{v * 1e6:.0f}" for v in figures[name])
        print(f"  {name:40} {medians[name] * 1e6:7.0f} µs CPU {each} (median; rounds {rounds})")
    print(f"  {'aiohttp / httpx':40} {medians[ways[1]] / medians[ways[0]]:7.2f}x")


if __name__ == "__main__":
    main()
