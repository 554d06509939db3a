"""Benchmark: create-to-first-answer of a real Claude Code agent against the echo demo agent, local mode.

For each agent type, ``--runs`` times (alternating, so both see the same machine):
``LocalBackend.create`` of an agent with a first message, until its agentapi's
``GET /messages`` holds the agent's answer to it; then the agent is deleted with
purge. Claude Code talks to the model stand-in of the tests
(:mod:`tests.model_standin`, on 127.0.0.1), whose answer takes no time: the
figure is what starting Claude Code, its readiness and the delivery of the first
message cost, not a model's latency.

Needs agentapi (``bin/just agentapi``) and Claude Code (``bin/just agents``).
Usage: ``python benchmarks/first_answer.py [--runs 5]``; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The imports below (E402) need the path entry above.
import aiohttp  # noqa: E402

from agentproxy.agentapi import locate  # noqa: E402
from agentproxy.backends.base import AgentStatus  # noqa: E402
from agentproxy.backends.local.backend import LocalBackend  # noqa: E402
from agentproxy.backends.local.ports import port_is_free  # noqa: E402
from agentproxy.backends.local.process import find_executable  # noqa: E402
from agentproxy.settings import Settings  # noqa: E402
from agentproxy.spec import build_spec  # noqa: E402
from tests.model_standin import ANSWER_PREFIX, ModelStandIn  # noqa: E402

TIMEOUT = 180.0
EXPECTED = {"echo": "echo: {}", "claude": ANSWER_PREFIX + "{}"}


def free_block(size: int) -> tuple[int, int]:
    """A block of ``size`` ports that are free now (bounded search)."""
    for start in range(29000, 60000 - size, size):
        if all(port_is_free(port) for port in range(start, start + size)):
            return start, start + size - 1
    raise SystemExit("no free block of ports")


async def first_answer(backend: LocalBackend, client: aiohttp.ClientSession, agent_type: str, n: int) -> float:
    """Seconds from create until the answer to the first message is in the conversation."""
    message = f"first answer {n}"
    spec = build_spec(backend.settings, "bench", f"{agent_type}-{n}", agent_type, message=message)
    started = time.monotonic()
    state = await backend.create(spec)
    try:
        expected = EXPECTED[agent_type].format(message)
        while True:
            state = await backend.get("bench", spec.id)
            port = state.details.get("port") if state.status is AgentStatus.READY else None
            if port:
                try:
                    async with client.get(f"http://127.0.0.1:{port}/messages",
                                          headers={"Host": "localhost"}) as response:
                        body = await response.json() if response.status == 200 else {"messages": []}
                    if any(m["role"] == "agent" and expected in m["content"] for m in body["messages"]):
                        return time.monotonic() - started
                except aiohttp.ClientError:
                    pass
            if time.monotonic() - started > TIMEOUT:
                raise SystemExit(f"{agent_type}: no answer within {TIMEOUT:g}s (state: {state.status}, "
                                 f"{state.reason}: {state.message})")
            await asyncio.sleep(0.02)
    finally:
        await backend.delete("bench", spec.id, purge=True)


async def main(args: argparse.Namespace) -> None:
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi is not installed: run `bin/just agentapi`")
    if find_executable("claude") is None:
        raise SystemExit("Claude Code is not installed: run `bin/just agents`")
    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-first-") as tmp:
        async with ModelStandIn() as model, aiohttp.ClientSession() as client:
            settings = Settings()
            settings.local_mode.agentapi_binary = agentapi
            settings.local_mode.data_dir = tmp
            settings.local_mode.ports.start, settings.local_mode.ports.end = free_block(16)
            settings.agents.claude.base_url = model.url
            settings.agents.claude.api_key_env = "AGENTPROXY_BENCH_MODEL_KEY"
            os.environ["AGENTPROXY_BENCH_MODEL_KEY"] = "sk-ant-bench-0123456789abcdefghijklmnop"
            backend = LocalBackend(settings)
            await backend.start()
            try:
                times: dict[str, list[float]] = {"echo": [], "claude": []}
                for n in range(args.runs):
                    for agent_type in times:
                        times[agent_type].append(await first_answer(backend, client, agent_type, n))
            finally:
                await backend.close()
    print(f"create-to-first-answer, local mode, {args.runs} runs each (the model is a stand-in on 127.0.0.1)")
    print(f"{'agent':<8} {'p50 s':>8} {'min s':>8} {'max s':>8}")
    for agent_type, values in times.items():
        print(f"{agent_type:<8} {statistics.median(values):>8.2f} {min(values):>8.2f} {max(values):>8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="agents of each type, one after the other (default: 5)")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one on PATH or in the cache)")
    asyncio.run(main(parser.parse_args()))
