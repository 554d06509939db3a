"""Benchmark: create-to-first-answer of a real Claude Code agent against the echo demo agent.

For each agent type, ``--runs`` times (alternating, so both see the same machine):
the backend's ``create`` of an agent with a first message, until its agentapi's
``GET /messages`` holds the agent's answer to it; then the agent is deleted with
purge. Claude Code talks to the model stand-in of the tests
(:mod:`tests.model_standin`), whose answer takes no time: the figure is what
starting Claude Code, its readiness and the delivery of the first message cost,
not a model's latency.

- local mode (always): agents are local processes; the stand-in listens on 127.0.0.1.
- ``--real-node`` (after local mode, in the same run): agents are pods on the test
  cluster's real node (``AGENTPROXY_REAL_NODE=1 bin/just cluster-up``, ``bin/just
  agent-image``; ``$KUBECONFIG``), in a fresh restricted namespace, the key in a
  Secret; the stand-in listens on the node's address, which the pods reach.
- ``--warm`` (both modes): three pools of one member each are configured as well: echo
  agents whose member waits for its binding to start agentapi, echo agents with
  ``prestart`` (the agent runs before the claim), and Claude Code with ``prestart`` (its
  key late-bound; local mode starts it at the claim all the same). The pre-started pools'
  creates ask for a CPU limit of their own, so that each pool serves its own creates. Each
  run also claims a member of each (a create that names no id) with its first message:
  claim-to-first-answer, interleaved with the cold creates. A pool is full again before its
  claim is timed (its refill is not part of the figure; it is the pool's job between claims).

Every create waits ``--settle`` seconds (3) before it is timed: the agent of the one before
is deleted, but its processes (on the real node: its pod's containers and volume) go on
ending for a while and would take the CPU of a 2-core machine from whichever create is next.

Needs agentapi (``bin/just agentapi``) and Claude Code (``bin/just agents``).
Usage: ``python -m benchmarks.first_answer [--runs 5] [--real-node]``; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

import aiohttp

from agentproxy.agentapi import locate
from agentproxy.backends.base import AgentStatus, Backend
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.backends.local.process import find_executable
from agentproxy.settings import Settings, load_settings
from agentproxy.spec import build_spec
from testenv.ports import free_block
from tests.model_standin import ANSWER_PREFIX, ModelStandIn

TIMEOUT = 300.0
KEY = "sk-ant-bench-0123456789abcdefghijklmnop"
"""The key agents get (the stand-in takes any)."""
REAL_NODE_LABEL = "agentproxy.io/real-node"
EXPECTED = {"echo": "echo: {}", "claude": ANSWER_PREFIX + "{}"}


WARM = "echo (warm)"
"""The row of claims from the pool whose members start agentapi at their claim."""
PRESTARTED = "echo (prestarted)"
"""The row of claims from the pool whose members run before their claim."""
CLAUDE_PRESTARTED = "claude (prestarted)"
"""The row of claims from the pool whose Claude Code members run before their claim."""
PRESTARTED_RESOURCES = {"cpu_limit": "400m"}
POOLS = ("pools=[{name: echo, size: 1, agent: echo}, "
         "{name: early, size: 1, agent: echo, prestart: true, resources: {cpu_limit: 400m}}, "
         "{name: early-claude, size: 1, agent: claude, prestart: true, resources: {cpu_limit: 400m}}]")
POOL_OF_ROW = {WARM: ("echo", "echo"), PRESTARTED: ("early", "echo"), CLAUDE_PRESTARTED: ("early-claude", "claude")}
"""A warm row's pool and agent type."""


def _ready_members(backend: Backend, pool: str) -> float:
    return sum(s.value for s in backend.metrics()
               if s.name == "pool_members" and ("state", "ready") in s.labels and ("pool", pool) in s.labels)


async def _pool_full(backend: Backend, pool: str) -> None:
    began = time.monotonic()
    while _ready_members(backend, pool) < 1:
        if time.monotonic() - began > TIMEOUT:
            raise SystemExit(f"the pool had no ready member within {TIMEOUT:g}s")
        await asyncio.sleep(0.05)


async def first_answer(backend: Backend, settings: Settings, client: aiohttp.ClientSession, agent_type: str,
                       n: int, settle: float = 0.0) -> float:
    """Seconds from create until the answer to the first message is in the conversation (a
    claim from the pool for :data:`WARM`: a create that names no id)."""
    warm = agent_type in POOL_OF_ROW
    resources = PRESTARTED_RESOURCES if agent_type in (PRESTARTED, CLAUDE_PRESTARTED) else None
    if warm:
        pool, agent_type = POOL_OF_ROW[agent_type]
        await _pool_full(backend, pool)
    # The previous create's agent is deleted, but its processes (a pod: its containers, its
    # volume) go on ending for a while and take the CPU from this one: every row waits alike.
    await asyncio.sleep(settle)
    message = f"first answer {n}"
    spec = build_spec(settings, "bench", None if warm else f"{agent_type}-{n}", agent_type, message=message,
                      resources=resources)
    started = time.monotonic()
    state = await backend.create(spec, names_id=not warm)
    if warm and state.details.get("start") != "warm":
        raise SystemExit(f"the claim was served {state.details.get('start')!r}, not from the pool")
    spec = state.spec
    try:
        expected = EXPECTED[agent_type].format(message)
        while True:
            state = await backend.get("bench", spec.id)
            upstream = state.upstream if state.status is AgentStatus.READY else None
            if upstream:
                try:
                    async with client.get(f"{upstream}/messages", headers={"Host": "localhost"},
                                          timeout=aiohttp.ClientTimeout(total=10)) as response:
                        body = await response.json() if response.status == 200 else {"messages": []}
                    if any(m["role"] == "agent" and expected in m["content"] for m in body["messages"]):
                        return time.monotonic() - started
                except (TimeoutError, aiohttp.ClientError):
                    pass
            if time.monotonic() - started > TIMEOUT:
                raise SystemExit(f"{agent_type}: no answer within {TIMEOUT:g}s (state: {state.status}, "
                                 f"{state.reason}: {state.message})")
            await asyncio.sleep(0.02)
    finally:
        await backend.delete("bench", spec.id, purge=True)


async def measure(backend: Backend, settings: Settings, runs: int, warm: bool = False,
                  settle: float = 0.0) -> dict[str, list[float]]:
    """Create-to-first-answer of ``runs`` agents of each type, alternating (and of as many
    claims from the pool when ``warm``)."""
    times: dict[str, list[float]] = {"echo": [], "claude": []}
    if warm:
        times[WARM] = []
        times[PRESTARTED] = []
        times[CLAUDE_PRESTARTED] = []
    async with aiohttp.ClientSession() as client:
        for n in range(runs):
            for agent_type in times:
                times[agent_type].append(await first_answer(backend, settings, client, agent_type, n, settle))
    return times


def report(title: str, times: dict[str, list[float]]) -> None:
    print(title)
    print(f"{'agent':<28} {'p50 s':>8} {'min s':>8} {'max s':>8}")
    for agent_type, values in times.items():
        print(f"{agent_type:<28} {statistics.median(values):>8.2f} {min(values):>8.2f} {max(values):>8.2f}")
    for row, cold in ((WARM, "echo"), (PRESTARTED, "echo"), (CLAUDE_PRESTARTED, "claude")):
        if row in times:
            print(f"{row + ' / cold':<28} {statistics.median(times[row]) / statistics.median(times[cold]):>8.2f}"
                  f"   (p50s, against {cold}'s cold create)")


async def local_mode(args: argparse.Namespace, agentapi: str) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-first-") as tmp:
        async with ModelStandIn() as model:
            settings = load_settings(overrides=[POOLS] if args.warm else [], environ={}).settings
            settings.local_mode.agentapi_binary = agentapi
            settings.local_mode.data_dir = tmp
            settings.local_mode.ports.start, settings.local_mode.ports.end = free_block(16)
            settings.agents.claude.base_url = model.url
            settings.agents.claude.api_key_env = "AGENTPROXY_BENCH_MODEL_KEY"
            os.environ["AGENTPROXY_BENCH_MODEL_KEY"] = KEY
            backend = LocalBackend(settings)
            await backend.start()
            try:
                return await measure(backend, settings, args.runs, args.warm, args.settle)
            finally:
                await backend.close()


async def real_node(args: argparse.Namespace) -> dict[str, list[float]]:
    import kr8s.asyncio

    from agentproxy.backends.k8s.backend import K8sBackend
    from agentproxy.backends.k8s.client import Client

    from .real_node import real_node_namespace

    api = await kr8s.asyncio.api()
    admin = Client(api)
    node = (await admin.request("GET", "/api/v1/nodes", params={"labelSelector": f"{REAL_NODE_LABEL}=true"}))
    nodes = node.get("items") or []
    if not nodes:
        raise SystemExit("bench-first-answer --real-node: the cluster has no real node; start it with "
                         "AGENTPROXY_REAL_NODE=1 bin/just cluster-up")
    address = next(a["address"] for a in nodes[0]["status"]["addresses"] if a["type"] == "InternalIP")
    ns = await real_node_namespace(admin, "bench-fa")
    try:
        await admin.request("POST", f"/api/v1/namespaces/{ns}/secrets", body={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "model-key"},
            "stringData": {"ANTHROPIC_API_KEY": KEY}})
        async with ModelStandIn(host=address) as model:
            settings = load_settings(overrides=[
                f"k8s_mode.namespace={ns}", "k8s_mode.pod_address=pod_ip", "k8s_mode.image_pull_policy=Never",
                "k8s_mode.storage_class=local-path", "k8s_mode.resources.cpu_request=50m",
                "k8s_mode.resources.cpu_limit=1", "k8s_mode.resources.memory_limit=1Gi",
                "k8s_mode.secret_name=model-key", f"agents.claude.base_url={model.url}",
                *([POOLS] if args.warm else [])], environ={}).settings
            backend = K8sBackend(settings, client=Client(api))
            await backend.start()
            try:
                return await measure(backend, settings, args.runs, args.warm, args.settle)
            finally:
                await backend.close()
    finally:
        await admin.request("DELETE", f"/api/v1/namespaces/{ns}")
        await admin.close()


async def message_floor(agentapi: str, runs: int) -> list[float]:
    """agentapi's own time from ``POST /message`` to the answer in ``/messages``, on an echo
    agent that is stable already: what any first answer costs at least, whoever sends it."""
    port = free_block(1)[0]
    process = await asyncio.create_subprocess_exec(
        agentapi, "server", "--port", str(port), "--type", "custom", "--", sys.executable, "-m",
        "agentproxy.demo_agent", stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    base, host = f"http://127.0.0.1:{port}", {"Host": "localhost"}
    times: list[float] = []
    try:
        async with aiohttp.ClientSession(headers=host, timeout=aiohttp.ClientTimeout(total=30)) as client:
            for n in range(runs):
                began = time.monotonic()
                while True:
                    try:
                        async with client.get(f"{base}/status") as response:
                            if (await response.json())["status"] == "stable":
                                break
                    except (aiohttp.ClientError, ValueError, KeyError):
                        pass
                    if time.monotonic() - began > TIMEOUT:
                        raise SystemExit("agentapi never became stable")
                    await asyncio.sleep(0.02)
                began = time.monotonic()
                async with client.post(f"{base}/message", json={"content": f"floor {n}", "type": "user"}) as response:
                    response.raise_for_status()
                while True:
                    async with client.get(f"{base}/messages") as response:
                        said = (await response.json())["messages"]
                    if any(m["role"] == "agent" and f"echo: floor {n}" in m["content"] for m in said):
                        times.append(time.monotonic() - began)
                        break
                    await asyncio.sleep(0.01)
    finally:
        process.terminate()
        await process.wait()
    return times


async def main(args: argparse.Namespace) -> None:
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi is not installed: run `bin/just agentapi`")
    if find_executable("claude") is None:
        raise SystemExit("Claude Code is not installed: run `bin/just agents`")
    if args.warm:
        floor = await message_floor(agentapi, args.runs)
        print(f"agentapi's own message-to-answer on a stable echo agent (the floor of any first answer): "
              f"p50 {statistics.median(floor):.2f} s, min {min(floor):.2f} s, max {max(floor):.2f} s\n")
    report(f"create-to-first-answer, local mode, {args.runs} runs each (the model is a stand-in on 127.0.0.1)",
           await local_mode(args, agentapi))
    if args.real_node:
        times = await real_node(args)
        print()
        report(f"create-to-first-answer, real node, {args.runs} runs each (pods; the model is a stand-in on the "
               "node's address)", times)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="agents of each type, one after the other (default: 5)")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one on PATH or in the cache)")
    parser.add_argument("--warm", action="store_true",
                        help="also claim a member of two pools of echo agents each run, one pre-started (claim-to-first-answer)")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds every create waits before it is timed, for the previous agent's end (default 3)")
    parser.add_argument("--real-node", action="store_true",
                        help="also on the test cluster's real node ($KUBECONFIG), after local mode")
    arguments = parser.parse_args()
    if arguments.real_node:
        from .cluster_check import require_cluster

        require_cluster("bench-first-answer --real-node")
    asyncio.run(main(arguments))
