"""Benchmark of a restart of the proxy in local mode: how soon it serves, how soon it has
re-adopted every agent.

A real ``agentproxy serve`` (local mode, its own data directory and port range) creates
``--agents`` echo agents (the real agentapi) and waits until all are ready; then the
proxy is killed with SIGKILL (its agents keep running) and the same command is started
again. Measured from the start of the new process:

- ``healthz``: until ``GET /healthz`` answers 200;
- ``all ready``: until ``GET /agents`` shows every agent ``ready``;
- the restarted proxy's own CPU time until ``/healthz`` answered, and its time spent
  waiting for a CPU meanwhile (``/proc/PID/schedstat``, Linux): a time to ``/healthz``
  far above its CPU time is a proxy starved by other processes (the agents among them);
- the same three figures for the round's first start, with no agent yet: the floor that
  the machine's other work sets at that moment, for comparison;

and checked: every agent kept its pid (re-adopted, not restarted). Afterwards every agent
is deleted through the API; whatever still runs of them is ended by pid.

Usage: ``python -m benchmarks.restart [--agents 100] [--agents 500] [--set KEY=VALUE] [--agentapi PATH]``
(each ``--agents`` is one round; on 2 cores 500 agents take a few minutes to create).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil

from agentproxy.agentapi import locate
from testenv.ports import free_block, free_port

TIMEOUT = 900.0
"""Seconds any one phase may take at most."""


def serve_command(data: Path, port: int, first: int, count: int, agentapi: str,
                  extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    settings = {
        "server.port": port, "local_mode.data_dir": data, "local_mode.agentapi_binary": agentapi,
        "local_mode.ports.start": first, "local_mode.ports.end": first + count + 49,
        # A machine busy with hundreds of agents starting at once is slow, not broken.
        "local_mode.supervision.start_timeout": 300,
    }
    argv = [sys.executable, "-m", "agentproxy", "serve"]
    for key, value in settings.items():
        argv += ["--set", f"{key}={value}"]
    for setting in extra:
        argv += ["--set", setting]
    return argv


async def until(check, what: str, interval: float = 0.05) -> float:
    """Seconds until ``check()`` is true (RuntimeError after TIMEOUT)."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > TIMEOUT:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic() - began


async def healthy(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(f"{base}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as r:
            return r.status == 200
    except (TimeoutError, aiohttp.ClientError):
        return False


async def agents(http: aiohttp.ClientSession, base: str) -> list[dict] | None:
    try:
        async with http.get(f"{base}/agents", timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status != 200:
                return None
            body = await r.json()
    except (TimeoutError, aiohttp.ClientError):
        return None
    return body["agents"] if isinstance(body, dict) else body


def scheduled(pid: int) -> tuple[float, float]:
    """Seconds the main thread of ``pid`` has run on a CPU and waited for one (NaN without
    ``/proc/PID/schedstat``)."""
    try:
        with open(f"/proc/{pid}/schedstat", encoding="ascii") as src:
            ran, waited = src.read().split()[:2]
        return int(ran) / 1e9, int(waited) / 1e9
    except (OSError, ValueError):
        return float("nan"), float("nan")


def descendants_in(work: Path) -> list[psutil.Process]:
    """Processes whose working directory is under ``work`` (the agents of this run)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.cwd().startswith(str(work)):
                found.append(proc)
        except psutil.Error:
            continue
    return found


async def round_(count: int, agentapi: str, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="agentproxy-restart-") as tmp:
        work = Path(tmp)
        port, first = free_port(), free_block(count + 50)[0]
        base = f"http://127.0.0.1:{port}"
        argv = serve_command(work / "data", port, first, count, agentapi, extra)
        log = open(work / "serve.log", "ab")
        proxy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)
        ids = [f"r{i:04d}" for i in range(count)]
        try:
            # Any one request may take as long as a phase (aiohttp's own default is 300 s): creating
            # hundreds of agents on 2 cores is slow, not broken.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16),
                                             timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http:
                # The first start has no agent to adopt and none running: its time to /healthz is
                # this moment's floor on this machine (other work competes too), for comparison.
                first_healthz = await until(lambda: healthy(http, base), "the first proxy", 0.01)
                first_cpu_s, first_waited_s = scheduled(proxy.pid)

                async def create(agent_id: str) -> None:
                    async with http.post(f"{base}/sessions/bench/agents", json={"id": agent_id}) as r:
                        assert r.status == 201, await r.text()
                began = time.monotonic()
                await asyncio.gather(*(create(a) for a in ids))

                async def all_ready() -> bool:
                    listed = await agents(http, base)
                    failed = [a for a in listed or [] if a["status"] == "failed"]
                    if failed:
                        raise RuntimeError(f"{len(failed)} agents failed, e.g. {failed[0]['reason']}: "
                                           f"{failed[0]['message'][-3000:]}")
                    return listed is not None and len(listed) == count and all(a["status"] == "ready" for a in listed)
                await until(all_ready, "every agent to be ready", 0.5)
                created = time.monotonic() - began
                before = {a["id"]: a["details"]["pid"] for a in await agents(http, base) or []}

                proxy.kill()  # SIGKILL: no shutdown at all, the agents keep running
                proxy.wait()
                restarted = time.monotonic()
                proxy = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=work)
                await until(lambda: healthy(http, base), "the restarted proxy", 0.01)
                healthz = time.monotonic() - restarted
                cpu_s, waited_s = scheduled(proxy.pid)
                await until(all_ready, "every agent to be ready again", 0.05)
                ready = time.monotonic() - restarted
                after = {a["id"]: a["details"]["pid"] for a in await agents(http, base) or []}
                kept = sum(1 for a in ids if before.get(a) is not None and before[a] == after.get(a))

                limit = asyncio.Semaphore(16)

                async def delete(agent_id: str) -> None:
                    async with limit, http.delete(f"{base}/sessions/bench/agents/{agent_id}?purge=true") as r:
                        await r.read()
                await asyncio.gather(*(delete(a) for a in ids))
            return {"agents": count, "create_s": created, "healthz_s": healthz, "all_ready_s": ready,
                    "same_pid": kept, "cpu_s": cpu_s, "waited_s": waited_s, "first_healthz_s": first_healthz,
                    "first_cpu_s": first_cpu_s, "first_waited_s": first_waited_s}
        except BaseException:
            # The proxy's own account of what went wrong, before its directory is removed.
            tail = (work / "serve.log").read_text(errors="replace").splitlines()[-40:]
            print("\n".join(["last lines of the proxy's log:", *tail]), file=sys.stderr, flush=True)
            raise
        finally:
            if proxy.poll() is None:
                proxy.send_signal(signal.SIGTERM)
                try:
                    proxy.wait(30)
                except subprocess.TimeoutExpired:
                    proxy.kill()
                    proxy.wait()
            log.close()
            for proc in descendants_in(work):  # only what runs in this round's own directory
                try:
                    proc.kill()
                except psutil.Error:
                    pass


async def main(args: argparse.Namespace) -> None:
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi not found: run `bin/just agentapi` or pass --agentapi")
    print(f"{'agents':>7} {'create→ready s':>15} {'restart→healthz s':>18} {'restart→all ready s':>20} same pid "
          f"{'cpu s':>6} {'waited s':>8} {'empty start→healthz s (cpu, waited)':>36}")
    for count in args.agents or [100]:
        r = await round_(count, agentapi, args.set or [])
        first = f"{r['first_healthz_s']:.2f} ({r['first_cpu_s']:.2f}, {r['first_waited_s']:.2f})"
        print(f"{r['agents']:>7} {r['create_s']:>15.1f} {r['healthz_s']:>18.2f} {r['all_ready_s']:>20.2f} "
              f"{r['same_pid']:>4}/{r['agents']:<4}{r['cpu_s']:>6.2f} {r['waited_s']:>8.2f} {first:>36}", flush=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the rounds clean up after themselves (finally) on SIGTERM too


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, action="append", help="agents per round (repeatable; default 100)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="a setting of both proxies (repeatable), e.g. local_mode.agent_nice=0")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one agentproxy finds)")
    asyncio.run(main(parser.parse_args()))
