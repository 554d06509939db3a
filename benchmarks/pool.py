"""Benchmark of warm pools in local mode: claim-to-ready and claim-to-first-answer against cold creates.

For each concurrency (``--concurrency``, default 1 and 20) and each of ``--rounds`` rounds (3):

- warm: with a pool of ``--size`` echo agents full, that many creates at once that name no id
  (each takes a member and binds its first message);
- cold: as many creates at once of the same agent type that name an id (created as without
  pools), in the same run, against the same backend.

Each create is timed until the agent is ``ready`` and until its first message's answer is in
the conversation (``GET /messages``). A round's p50 and p99 are taken over its creates; the
table shows the median of the rounds and the ratio warm/cold. After the warm burst it also
times the refill: until the pool holds ``--size`` ready members again.

agentapi is the real binary; the agent is the echo demo agent; everything runs on 127.0.0.1.

Usage: ``python -m benchmarks.pool [--concurrency 1 20] [--rounds 3] [--size 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from agentproxy.agentapi import locate
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.pools import READY
from agentproxy.settings import Settings
from agentproxy.spec import build_spec
from testenv.ports import free_block

from .local import percentile

TIMEOUT = 180.0


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = TIMEOUT, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def _ready_members(backend: LocalBackend) -> int:
    pools = backend._pools
    return 0 if pools is None else sum(1 for m in pools.members.values() if m.state == READY)


async def _answered(client: aiohttp.ClientSession, upstream: str, text: str) -> bool:
    try:
        async with client.get(f"{upstream}/messages", headers={"Host": "localhost"}) as response:
            if response.status != 200:
                return False
            body = await response.json()
    except aiohttp.ClientError:
        return False
    return any(m.get("role") == "agent" and f"echo: {text}" in m.get("content", "") for m in body["messages"])


async def _one(backend: LocalBackend, settings: Settings, client: aiohttp.ClientSession, name: str,
               warm: bool) -> tuple[float, float, str]:
    """Create one agent; seconds to ready and to its first answer, and how it started."""
    message = f"hello {name}"
    spec = build_spec(settings, f"s-{name}", name, "echo", message=message)
    began = time.monotonic()
    state = await backend.create(spec, names_id=not warm)

    async def ready() -> bool:
        nonlocal state
        state = await backend.get(state.session, state.id)
        if state.status is AgentStatus.FAILED:
            raise SystemExit(f"agent {state.id} failed: {state.message}")
        return state.status is AgentStatus.READY and state.upstream is not None

    await _until(ready, what=f"agent {state.id} ready")
    to_ready = time.monotonic() - began
    assert state.upstream is not None
    upstream = state.upstream
    await _until(lambda: _answered(client, upstream, message), what=f"agent {state.id}'s first answer")
    return to_ready, time.monotonic() - began, str(state.details.get("start"))


async def _burst(backend: LocalBackend, settings: Settings, client: aiohttp.ClientSession, n: int, warm: bool,
                 tag: str) -> tuple[list[float], list[float]]:
    results = await asyncio.gather(*(_one(backend, settings, client, f"{tag}-{i}", warm) for i in range(n)))
    starts = {start for _, _, start in results}
    expected = "warm" if warm else "cold"
    if starts != {expected}:
        raise SystemExit(f"expected only {expected} starts, got {sorted(starts)}")
    for state in await backend.list():
        await backend.delete(state.session, state.id, purge=True)
    return [r for r, _, _ in results], [a for _, a, _ in results]


def _row(label: str, rounds: list[list[float]]) -> tuple[float, float]:
    p50 = statistics.median(percentile(r, 0.5) for r in rounds) * 1000
    p99 = statistics.median(percentile(r, 0.99) for r in rounds) * 1000
    print(f"  {label:<34} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms")
    return p50, p99


async def run(args: argparse.Namespace) -> None:
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi is not installed: run `bin/just agentapi`")
    with tempfile.TemporaryDirectory(prefix="agentproxy-pool-bench-") as tmp:
        settings = Settings()
        settings.local_mode.data_dir = str(Path(tmp) / "data")
        settings.local_mode.agentapi_binary = agentapi
        settings.local_mode.ports.start, settings.local_mode.ports.end = free_block(4 * args.size + 16, mostly=True)
        settings.agents.max_concurrent_creates = max(args.concurrency)
        settings.agents.max_per_session = 0
        settings.pools = [{"name": "echo", "size": args.size, "agent": "echo"}]
        backend = LocalBackend(settings)
        await backend.start()
        try:
            async with aiohttp.ClientSession() as client:
                async def full() -> bool:
                    return _ready_members(backend) >= args.size

                await _until(full, what="the pool to fill")
                for n in args.concurrency:
                    if n > args.size:
                        raise SystemExit(f"--concurrency {n} is more than the pool's --size {args.size}")
                    warm_ready: list[list[float]] = []
                    warm_answer: list[list[float]] = []
                    cold_ready: list[list[float]] = []
                    cold_answer: list[list[float]] = []
                    refills: list[float] = []
                    for r in range(args.rounds):
                        await _until(full, what="the pool to fill")
                        began = time.monotonic()
                        ready, answer = await _burst(backend, settings, client, n, True, f"w{n}r{r}")
                        warm_ready.append(ready)
                        warm_answer.append(answer)
                        await _until(full, what="the pool to refill")
                        refills.append(time.monotonic() - began)
                        ready, answer = await _burst(backend, settings, client, n, False, f"c{n}r{r}")
                        cold_ready.append(ready)
                        cold_answer.append(answer)
                    print(f"{n} create(s) at once, median of {args.rounds} rounds (pool of {args.size}):")
                    w50, _ = _row("warm claim-to-ready", warm_ready)
                    c50, _ = _row("cold create-to-ready", cold_ready)
                    wa50, _ = _row("warm claim-to-first-answer", warm_answer)
                    ca50, _ = _row("cold create-to-first-answer", cold_answer)
                    print(f"  ratio warm/cold p50: ready {w50 / c50:.2f}, first answer {wa50 / ca50:.2f}")
                    print(f"  refill after the burst (burst start to pool full): median "
                          f"{statistics.median(refills):.2f} s")
        finally:
            pools = backend._pools
            if pools is not None:
                pools.pools = {}
                pools.wake()

                async def drained() -> bool:
                    return pools.empty

                await _until(drained, what="the pool to drain")
            for state in await backend.list():
                await backend.delete(state.session, state.id, purge=True)
            await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--agentapi", help="the agentapi binary (default: found on PATH or in the cache)")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
