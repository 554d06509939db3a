"""Benchmark: how soon ``waiting_input`` reaches ``GET /events`` after Claude Code's hook (local mode).

One real Claude Code agent in permission mode ``default`` (it asks before it runs Bash), behind
the real HTTP API on 127.0.0.1, is asked ``--runs`` times to write a file. Each time its
``Notification`` hook writes the question (with the hook's own clock, ``time.time()``), and the
proxy shows it when it next looks (the agent's screen changed, and the looks a moment after,
see :mod:`agentproxy.backends.local.supervisor`). The figure is the time from the hook's write
to the ``status`` event with ``waiting_input`` read from ``/events``; beside it, from the
message to that event. Then the question is answered (Enter, through the proxy) and the tool
runs. The model is the tests' stand-in (:mod:`tests.model_standin`), whose answers take no time.

Needs agentapi (``bin/just agentapi``) and Claude Code (``bin/just agents``).
Usage: ``python -m benchmarks.waiting [--runs 20]``; run it alone on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from agentproxy.agentapi import locate
from agentproxy.api import create_app
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.backends.local.process import find_executable
from agentproxy.settings import Settings
from agentproxy.waiting import marker_path
from benchmarks.first_answer import KEY, free_block
from tests.conversation import call, wait_stable
from tests.model_standin import ModelStandIn

TIMEOUT = 300.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


async def send_when_stable(client: aiohttp.ClientSession, api: str, text: str) -> float:
    """Send ``text`` once the agent takes it; when it was sent. agentapi refuses a message while
    the screen changes, which it may do again between a stable status and the message (Claude
    Code finishing its last answer): then wait for it to be stable again."""
    for _ in range(20):
        await wait_stable(client, api, timeout=TIMEOUT)
        sent = time.time()
        async with client.post(f"{api}/message", json={"content": text, "type": "user"},
                               headers={"Host": "localhost"}) as response:
            if response.status == 200:
                return sent
            answer = await response.text()
        await asyncio.sleep(0.5)
    raise SystemExit(f"the agent never took the message: {answer}")


async def until_file(path: Path) -> None:
    """Wait until the tool the question was about wrote its file."""
    deadline = time.monotonic() + TIMEOUT
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path.name} was not written within {TIMEOUT:g} s")
        await asyncio.sleep(0.1)


class EventReader:
    """The ``/events`` stream, read into a queue of (receive time, event)."""

    def __init__(self, client: aiohttp.ClientSession, url: str) -> None:
        self.client, self.url = client, url
        self.queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with self.client.get(self.url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            self.opened.set()
            async for raw in response.content:
                if raw.startswith(b"data: "):
                    self.queue.put_nowait((time.time(), json.loads(raw[6:])))

    async def until(self, agent_id: str, status: str) -> tuple[float, dict[str, Any]]:
        while True:
            seen, event = await asyncio.wait_for(self.queue.get(), TIMEOUT)
            if event.get("id") == agent_id and event.get("status") == status:
                return seen, event


async def measure(runs: int, agentapi: str) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-waiting-") as tmp:
        async with ModelStandIn() as model, aiohttp.ClientSession() as client:
            settings = Settings()
            settings.local_mode.agentapi_binary = agentapi
            settings.local_mode.data_dir = tmp
            settings.local_mode.ports.start, settings.local_mode.ports.end = free_block(16)
            settings.agents.claude.base_url = model.url
            settings.agents.claude.api_key_env = "AGENTPROXY_BENCH_MODEL_KEY"
            settings.agents.claude.permission_mode = "default"
            os.environ["AGENTPROXY_BENCH_MODEL_KEY"] = KEY
            backend = LocalBackend(settings)
            await backend.start()
            runner = web.AppRunner(create_app(settings, backend), handler_cancellation=True, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            events = EventReader(client, f"{base}/events")
            try:
                await asyncio.wait_for(events.opened.wait(), TIMEOUT)
                async with client.post(f"{base}/sessions/bench/agents", json={"id": "w1", "agent": "claude"}) as created:
                    if created.status != 201:
                        raise SystemExit(f"create: {created.status} {await created.text()}")
                    agent = await created.json()
                work_dir = Path(agent["details"]["work_dir"])
                await events.until("w1", "ready")
                api = f"{base}/sessions/bench/agents/w1/api"
                after_hook, after_message = [], []
                for n in range(runs):
                    sent = await send_when_stable(client, api, f"please write-file proof-{n}.txt run{n}")
                    seen, _ = await events.until("w1", "waiting_input")
                    hooked = json.loads(Path(marker_path(str(work_dir))).read_text())["at"]
                    after_hook.append(seen - hooked)
                    after_message.append(seen - sent)
                    await call(client, "POST", f"{api}/message", json={"content": "\r", "type": "raw"})
                    await events.until("w1", "ready")
                    await until_file(work_dir / f"proof-{n}.txt")
                return after_hook, after_message
            finally:
                events.task.cancel()
                await asyncio.gather(events.task, return_exceptions=True)
                await runner.cleanup()
                with contextlib.suppress(Exception):  # local agents outlive their proxy: end it
                    await backend.delete("bench", "w1", purge=True)
                await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="questions asked, one after the other (default: 20)")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one on PATH or in the cache)")
    args = parser.parse_args()
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi is not installed: run `bin/just agentapi`")
    if find_executable("claude") is None:
        raise SystemExit("Claude Code is not installed: run `bin/just agents`")
    after_hook, after_message = asyncio.run(measure(args.runs, agentapi))
    load = open("/proc/loadavg").read().split()[:3]
    print(f"waiting_input on /events, local mode, {args.runs} questions of Claude Code; load average {' '.join(load)}")
    print(f"{'from':<22} {'p50 s':>7} {'p95 s':>7} {'max s':>7}")
    for name, values in (("the hook's write", after_hook), ("the message", after_message)):
        print(f"{name:<22} {statistics.median(values):>7.2f} {percentile(values, 0.95):>7.2f} {max(values):>7.2f}")


if __name__ == "__main__":
    main()
