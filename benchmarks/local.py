"""Benchmark of the local backend: supervision overhead, memory per agent, mass start.

Three measurements, everything on 127.0.0.1:

1. create-to-ready: ``LocalBackend.create`` until the agent is ``ready``, against
   starting the same agentapi command line directly and polling ``GET /status``
   every 5 ms. The difference of the medians is what supervision costs (spawn
   bookkeeping, the state file, readiness probing).
2. memory per agent: RSS of this process (which hosts the backend) before and
   after ``--agents`` agents are supervised, divided by their number; plus the
   CPU the monitor uses while they idle (sampling every agent's process tree once
   a second).
3. mass start: ``--agents`` creates at once, time until all are ready, then
   deleting them all at once; afterwards no process of theirs may remain.

agentapi is the real binary (``--agentapi PATH``, default: the one agentproxy
finds on PATH or in its cache; ``just agentapi`` installs it), started with the
same command line as agentproxy starts it (:mod:`agentproxy.launch`); the agent
is the echo demo agent.

Usage: ``python -m benchmarks.local [--agents 100] [--samples 15] [--agentapi PATH]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from agentproxy.agentapi import locate
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.backends.local.process import find_executable
from agentproxy.launch import agent_launch
from agentproxy.settings import Settings
from agentproxy.spec import build_spec
from testenv.ports import free_block

READY_TIMEOUT = 120.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def rss() -> int:
    return psutil.Process().memory_info().rss


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def poll_status(port: int, deadline: float, interval: float = 0.005) -> None:
    request = b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status_line = await reader.readline()
            writer.close()
            if b" 200 " in status_line:
                return
        except OSError:
            pass
        await asyncio.sleep(interval)
    raise TimeoutError(f"port {port} never answered")


async def direct_start(argv: list[str], cwd: Path, port: int) -> float:
    """Seconds from spawning ``argv`` until it answers /status; then it is stopped."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            cwd=cwd, start_new_session=True)
    try:
        await poll_status(port, started + READY_TIMEOUT)
        return time.monotonic() - started
    finally:
        stop_directly([proc])


async def direct_mass_start(argvs: list[tuple[str, ...]], cwd: Path, first_port: int) -> float:
    """Seconds until the agentapi processes of ``argvs`` (listening on ``first_port`` and up),
    spawned directly one after the other, all answer; then they are killed."""
    n = len(argvs)
    started = time.monotonic()
    procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True) for argv in argvs]
    try:
        await asyncio.gather(*(poll_status(first_port + i, started + READY_TIMEOUT, 0.025) for i in range(n)))
        return time.monotonic() - started
    finally:
        stop_directly(procs)


def stop_directly(procs: list[subprocess.Popen]) -> None:
    """SIGTERM (agentapi then ends and reaps its agent), SIGKILL to the trees of those that
    did not end within 10 s."""
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + 10
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for member in psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]:
                try:
                    member.kill()
                except psutil.NoSuchProcess:
                    pass
            proc.wait()


LONGEST_STALL = [0.0]


async def longest_stall(tick: float = 0.01) -> None:
    """Record in LONGEST_STALL how much later than asked a 10 ms sleep woke up, at most."""
    LONGEST_STALL[0] = 0.0
    while True:
        before = time.monotonic()
        await asyncio.sleep(tick)
        LONGEST_STALL[0] = max(LONGEST_STALL[0], time.monotonic() - before - tick)


async def all_ready_events(backend: LocalBackend, ids: set[str]) -> None:
    """Until every agent of ``ids`` was reported ready."""
    waiting = set(ids)
    async for event in backend.events():
        if event.agent.status is AgentStatus.FAILED and event.agent.id in waiting:
            raise SystemExit(f"agent {event.agent.id} failed: {event.agent.reason} {event.agent.message}")
        if event.agent.status is AgentStatus.READY:
            waiting.discard(event.agent.id)
            if not waiting:
                return


async def wait_ready(backend: LocalBackend, agent_id: str, deadline: float) -> None:
    while True:
        state = await backend.get("bench", agent_id)
        if state.status is AgentStatus.READY:
            return
        if state.status is AgentStatus.FAILED or time.monotonic() > deadline:
            raise SystemExit(f"agent {agent_id} did not get ready: {state.reason} {state.message}")
        await asyncio.sleep(0.002)


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="agentproxy-bench-"))
    try:
        agentapi = args.agentapi or locate()
        if agentapi is None:
            raise SystemExit("agentapi is not installed: run `just agentapi` or pass --agentapi PATH")
        # The range, then a port above it for single direct starts and N more for the direct mass start.
        start = free_block(2 * args.agents + 52)[0]
        settings = Settings()
        settings.local_mode.agentapi_binary = agentapi
        settings.local_mode.ports.start, settings.local_mode.ports.end = start, start + args.agents + 49
        settings.local_mode.data_dir = str(work / "data")
        settings.local_mode.supervision.stop_grace = 5.0
        backend = LocalBackend(settings)
        await backend.start()
        try:
            await run(backend, settings, args, work)
        finally:
            for state in await backend.list():
                await backend.delete(state.session, state.id)
            await backend.close()
        left = [p.pid for p in psutil.process_iter(["cwd"]) if str(p.info.get("cwd") or "").startswith(str(work))]
        print(f"\nprocesses left in the agents' directories after delete: {len(left)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def run(backend: LocalBackend, settings: Settings, args: argparse.Namespace, work: Path) -> None:
    print(f"agentapi: {settings.local_mode.agentapi_binary}; agent: echo demo agent; {os.cpu_count()} CPUs\n")

    # 1. create-to-ready, supervised and direct, interleaved so that both see the same machine.
    supervised, direct = [], []
    command = [find_executable("python3") or sys.executable, "-m", "agentproxy.demo_agent"]
    spare = settings.local_mode.ports.end + 1
    (work / "direct").mkdir()
    for i in range(args.samples + 1):
        spec = build_spec(settings, "bench", f"seq{i}", "echo")
        began = time.monotonic()
        await backend.create(spec)
        await wait_ready(backend, spec.id, began + READY_TIMEOUT)
        took_supervised = time.monotonic() - began
        await backend.delete("bench", spec.id, purge=True)
        argv = agent_launch(spec, port=spare, work_dir=str(work / "direct" / spec.id),
                            program=settings.local_mode.agentapi_binary, command=command).argv
        took_direct = await direct_start(list(argv), work / "direct", spare)
        if i:  # the first of each is a warm-up (imports, page cache)
            supervised.append(took_supervised)
            direct.append(took_direct)
    p50_s, p50_d = statistics.median(supervised), statistics.median(direct)
    print(f"create-to-ready, {args.samples} samples each       p50        p90")
    print(f"  supervised (LocalBackend)           {p50_s * 1000:7.1f} ms {percentile(supervised, 0.9) * 1000:7.1f} ms")
    print(f"  direct spawn + poll every 5 ms      {p50_d * 1000:7.1f} ms {percentile(direct, 0.9) * 1000:7.1f} ms")
    print(f"  supervision overhead (p50 - p50)    {(p50_s - p50_d) * 1000:7.1f} ms")

    # 2 and 3. N agents at once: time to ready (against starting as many directly), the longest
    # stall of the event loop meanwhile, memory and CPU of supervising them, delete.
    n = args.agents
    stalls = asyncio.ensure_future(longest_stall())
    argvs = [agent_launch(build_spec(settings, "bench", f"d{i}", "echo"), port=spare + 1 + i,
                          work_dir=str(work / "direct" / f"d{i}"), program=settings.local_mode.agentapi_binary,
                          command=command).argv for i in range(n)]
    direct_all = await direct_mass_start(argvs, work / "direct", spare + 1)
    stalls.cancel()
    await asyncio.gather(stalls, return_exceptions=True)
    direct_longest = LONGEST_STALL[0]
    ids = [f"m{i}" for i in range(n)]
    before = rss()
    stalls = asyncio.ensure_future(longest_stall())
    # Readiness from the event stream: polling 100 agents would load the loop being measured.
    readiness = asyncio.ensure_future(all_ready_events(backend, set(ids)))
    await asyncio.sleep(0)  # subscribed before the first create
    began = time.monotonic()
    await asyncio.gather(*(backend.create(build_spec(settings, "bench", agent_id, "echo")) for agent_id in ids))
    created = time.monotonic() - began
    await asyncio.wait_for(readiness, READY_TIMEOUT)
    all_ready = time.monotonic() - began
    stalls.cancel()
    await asyncio.gather(stalls, return_exceptions=True)
    longest = LONGEST_STALL[0]
    await asyncio.sleep(3 * backend.timing.sample_interval)  # a few samples of every tree
    cpu_before, idle_began = cpu_seconds(), time.monotonic()
    await asyncio.sleep(args.idle)
    idle_cpu = (cpu_seconds() - cpu_before) / (time.monotonic() - idle_began)
    after = rss()
    states = await backend.list(session="bench")
    tree_rss = sum(s.details["rss_bytes"] or 0 for s in states)
    began = time.monotonic()
    await asyncio.gather(*(backend.delete("bench", agent_id) for agent_id in ids))
    deleted = time.monotonic() - began
    print(f"\n{n} agents started at once")
    print(f"  all create calls returned           {created:7.2f} s")
    print(f"  all ready                           {all_ready:7.2f} s")
    print(f"  longest event loop stall meanwhile  {longest * 1000:7.1f} ms")
    print(f"  as many started directly, all ready {direct_all:7.2f} s "
          f"(longest stall {direct_longest * 1000:.1f} ms)")
    print(f"  all deleted at once                 {deleted:7.2f} s")
    print(f"  proxy RSS growth per agent          {(after - before) / n / 1024:7.1f} KiB "
          f"({before / 2**20:.1f} -> {after / 2**20:.1f} MiB)")
    print(f"  proxy CPU while they idle           {idle_cpu * 100:7.1f} % of one core "
          f"(sampling every {backend.timing.sample_interval:g} s)")
    print(f"  agents' own RSS (agentapi + agent)  {tree_rss / n / 2**20:7.1f} MiB per agent")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100, help="agents started at once (default: 100)")
    parser.add_argument("--samples", type=int, default=15, help="create-to-ready samples (default: 15)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle supervision measured (default: 5)")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one on PATH or in the cache)")
    asyncio.run(main(parser.parse_args()))
