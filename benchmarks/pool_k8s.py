"""Benchmark of warm pools in k8s mode against the cluster $KUBECONFIG points to (kwok's nodes).

For each concurrency (``--concurrency``, default 1 and 20) and each of ``--rounds`` rounds (3),
in a fresh namespace, with one k8s backend whose pool of ``--size`` echo agents is full:

- warm: that many creates at once that name no id (each claims a member);
- cold: as many creates at once that name an id (made as without pools), in the same run,
  against the same backend.

Each create is timed until the agent is ``ready`` (as the backend's watch cache shows it). A
round's p50 and p99 are taken over its creates; the table shows the median of the rounds and
the ratio warm/cold, and the API requests per create (every request of the backend while the
creates run and for a second after, when claims' StatefulSets and Services are relabelled, the
refill held back meanwhile). After each warm burst the refill is let go, and timed from the
burst's end until the pool holds ``--size`` ready members again.

On kwok no container runs: a member's pod is Ready as soon as kwok says so, and its binding
finds no launcher (the claim goes on without it). So claim-to-ready here is the claim's own
cost (its conditional write, the token's read, two applies, the cache catching up), and
create-to-ready the cold path's objects and kwok's pod stages; a real node adds the pod's
start (image, volume, process) to the cold path alone.

Usage: ``KUBECONFIG=... python -m benchmarks.pool_k8s [--concurrency 1 20] [--rounds 3] [--size 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import kr8s.asyncio

from agentproxy.backends.base import AgentStatus
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.pools import READY
from agentproxy.settings import load_settings
from agentproxy.spec import build_spec

from .k8s import _drop_namespaces, _namespace, percentile

TIMEOUT = 300.0


async def _until(check, what: str, timeout: float = TIMEOUT) -> float:
    """Poll ``check`` until true; the seconds it took."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def _ready_members(backend: K8sBackend) -> int:
    keeper = backend.pool_keeper
    return 0 if keeper is None else sum(1 for m in keeper.members() if m.state == READY)


async def _burst(backend: K8sBackend, n: int, warm: bool, tag: str) -> tuple[list[float], float, float]:
    """``n`` creates at once; each one's seconds to ready, the API requests per create, and
    when the last create was ready."""
    assert backend.client is not None
    calls = backend.client.calls

    async def one(i: int) -> tuple[str, float, str]:
        began = time.monotonic()
        state = await backend.create(build_spec(backend.settings, f"s-{tag}", f"{tag}-{i}", "echo"),
                                     names_id=not warm)
        await _until(lambda: (backend.index.get(state.id) or state).status is AgentStatus.READY,
                     f"agent {state.id} ready")
        return state.id, time.monotonic() - began, str(state.details.get("start"))

    results = await asyncio.gather(*(one(i) for i in range(n)))
    ended = time.monotonic()
    # A claim's StatefulSet and Service are relabelled after its answer: counted too.
    await asyncio.sleep(1.0)
    per_create = (backend.client.calls - calls) / n
    starts = {start for _, _, start in results}
    if starts != {"warm" if warm else "cold"}:
        raise SystemExit(f"expected only {'warm' if warm else 'cold'} starts, got {sorted(starts)}")
    for agent_id, _, _ in results:
        await backend.delete(f"s-{tag}", agent_id, purge=True)
    return [seconds for _, seconds, _ in results], per_create, ended


def _row(label: str, rounds: list[list[float]]) -> tuple[float, float]:
    p50 = statistics.median(percentile(r, 0.5) for r in rounds) * 1000
    p99 = statistics.median(percentile(r, 0.99) for r in rounds) * 1000
    print(f"  {label:<30} p50 {p50:8.1f} ms   p99 {p99:8.1f} ms")
    return p50, p99


async def run(args: argparse.Namespace) -> None:
    api = await kr8s.asyncio.api()
    setup = Client(api)
    namespaces: list[str] = []
    try:
        namespace = await _namespace(setup)
        namespaces.append(namespace)
        settings = load_settings(overrides=[
            f"k8s_mode.namespace={namespace}", "k8s_mode.pod_address=pod_ip", "agents.max_per_session=0",
            "agents.max_per_owner=0", f"pools=[{{name: echo, size: {args.size}, agent: echo}}]"], environ={}).settings
        backend = K8sBackend(settings, client=Client(api))
        await backend.start()
        keeper = backend.pool_keeper
        assert keeper is not None
        try:
            await _until(lambda: _ready_members(backend) == args.size, "the pool to fill")
            for n in args.concurrency:
                if n > args.size:
                    raise SystemExit(f"--concurrency {n} is more than the pool's --size {args.size}")
                warm: list[list[float]] = []
                cold: list[list[float]] = []
                calls: dict[bool, list[float]] = {True: [], False: []}
                refills: list[float] = []
                for round_ in range(args.rounds):
                    await _until(lambda: _ready_members(backend) == args.size, "the pool to fill")
                    await keeper.close()  # the refill waits: the burst's requests are the creates' own
                    times, per, ended = await _burst(backend, n, True, f"w{n}r{round_}-{uuid.uuid4().hex[:4]}")
                    warm.append(times)
                    calls[True].append(per)
                    await keeper.start()
                    await _until(lambda: _ready_members(backend) == args.size, "the refill")
                    refills.append(time.monotonic() - ended)
                    await keeper.close()
                    times, per, _ = await _burst(backend, n, False, f"c{n}r{round_}-{uuid.uuid4().hex[:4]}")
                    cold.append(times)
                    calls[False].append(per)
                    await keeper.start()
                print(f"{n} create(s) at once, median of {args.rounds} rounds (pool of {args.size}, kwok):")
                w50, w99 = _row("warm claim-to-ready", warm)
                c50, c99 = _row("cold create-to-ready", cold)
                print(f"  {'ratio warm/cold':<30} p50 {w50 / c50:8.2f}      p99 {w99 / c99:8.2f}")
                print(f"  API requests per create: warm {statistics.median(calls[True]):.1f}, "
                      f"cold {statistics.median(calls[False]):.1f}")
                print(f"  refill from the burst's end (pool full again): median {statistics.median(refills):.2f} s")
        finally:
            await backend.close()
    finally:
        await _drop_namespaces(setup, namespaces)
        await setup.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
