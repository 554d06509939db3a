"""Measure inbound webhooks against a real ``agentproxy serve`` (local mode, echo agents, 127.0.0.1).

- **webhook-to-agent-ready**: a signed GitHub-style ``issues`` delivery is posted, and the
  agent it makes is polled (``GET .../agents/ID``, every 20 ms) until it is ready; against the
  same through a plain create (``POST /sessions/S/agents`` with the same first message),
  interleaved, so the ratio shows what the hook adds. Each agent is deleted before the next.
- **notification delivery**: a subscription to ``deleted`` news posts to a receiver in this
  process (127.0.0.1); from the answer of each agent's delete to the message's arrival.
- **load**: ``--rate`` deliveries per second for ``--seconds`` (bounded: rate x seconds
  requests at most, each within 60 s) to a hook with ``max_running: 4``; one in ten repeats an
  earlier delivery id. Every request must be answered; no delivery id may make two agents; the
  agents made must be exactly the 202s; 429s (beyond max_running) are counted.

- **schedule firing skew** (with ``--schedule-minutes N``): two schedulers (replicas) in this
  process share one claim store and run three ``* * * * *`` schedules (UTC, Europe/Berlin,
  America/New_York) for N minutes of real time; each tick must fire once, and its skew is the
  time from the tick to the fire.

Usage: ``python -m benchmarks.triggers [--agents 10] [--rate 100] [--seconds 30] [--schedule-minutes 0]``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from testenv.ports import free_port

SECRET = "bench-secret"
TIMEOUT = 300.0


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _payload(number: int) -> bytes:
    """An ``issues`` ``opened`` payload in GitHub's shape (the fields the hooks read)."""
    return json.dumps({"action": "opened", "issue": {"number": number, "title": f"Bench issue {number}",
                                                     "labels": [{"name": "bug"}]},
                       "repository": {"full_name": "bench/repo"}, "sender": {"login": "bench"}},
                      separators=(",", ":")).encode()


def _headers(body: bytes, delivery: str) -> dict[str, str]:
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={mac}",
            "Content-Type": "application/json"}


class Receiver:
    """Notifications in: the time each one arrived, by agent id."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        message = await request.json()
        self.arrived[message["agent"]["id"]] = time.monotonic()
        return web.Response(text="ok")


class Proxy:
    """``agentproxy serve`` in a subprocess with two hooks and a subscription to ``deleted`` news."""

    def __init__(self, directory: Path, notify_url: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        first = random.randrange(31000, 39000, 100)
        prompt = "Fix {{ repository.full_name }}#{{ issue.number }}: {{ issue.title }}"
        match = {"events": ["issues"], "actions": ["opened"], "labels": ["bug"]}
        config = {"server": {"host": "127.0.0.1", "port": self.port},
                  "local_mode": {"data_dir": str(directory / "data"), "ports": {"start": first, "end": first + 99}},
                  "triggers": {"hooks": {
                      "ready": {"secret_env": "BENCH_HOOK_SECRET", "agent": "echo", "match": match, "prompt": prompt},
                      "load": {"secret_env": "BENCH_HOOK_SECRET", "agent": "echo", "match": match, "prompt": prompt,
                               "max_running": 4}},
                               "notifications": [{"name": "bench", "url": notify_url, "format": "signed",
                                                  "secret_env": "BENCH_HOOK_SECRET", "events": ["deleted"],
                                                  "hook": "ready"}],
                               "delivery": {"debounce": "0s"}}}
        path = directory / "agentproxy.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
        env["BENCH_HOOK_SECRET"] = SECRET
        self.log = directory / "serve.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "agentproxy", "serve", "--config", str(path)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentproxy serve exited:\n{self.log.read_text()}")
            try:
                async with http.get(f"{self.url}/readyz") as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("agentproxy serve did not get ready")
            await asyncio.sleep(0.1)

    async def delete_all(self, http: aiohttp.ClientSession) -> None:
        async with http.get(f"{self.url}/agents") as reply:
            agents = (await reply.json())["agents"]
        for agent in agents:
            async with http.delete(f"{self.url}/sessions/{agent['session']}/agents/{agent['id']}?purge=true"):
                pass

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def _until_ready(http: aiohttp.ClientSession, url: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while True:
        async with http.get(url) as reply:
            status = (await reply.json())["status"]
        if status == "ready":
            return
        if status == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{url} never got ready ({status})")
        await asyncio.sleep(0.02)


async def ready_latency(proxy: Proxy, http: aiohttp.ClientSession, count: int,
                        receiver: Receiver) -> dict[str, Any]:
    """Webhook-to-ready and create-to-ready, interleaved; delete-to-notification of the hook's agents."""
    notified: list[float] = []
    hook: list[float] = []
    plain: list[float] = []
    for i in range(count):
        body = _payload(1000 + i)
        began = time.monotonic()
        async with http.post(f"{proxy.url}/hooks/ready", data=body, headers=_headers(body, str(uuid.uuid4()))) as r:
            assert r.status == 202, await r.text()
            agent = await r.json()
        path = f"{proxy.url}/sessions/{agent['session']}/agents/{agent['id']}"
        await _until_ready(http, path)
        hook.append(time.monotonic() - began)
        async with http.delete(f"{path}?purge=true"):
            deleted = time.monotonic()
        deadline = deleted + 60
        while agent["id"] not in receiver.arrived and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        notified.append(receiver.arrived.get(agent["id"], float("inf")) - deleted)
        began = time.monotonic()
        message = f"Fix bench/repo#{1000 + i}: Bench issue {1000 + i}"
        async with http.post(f"{proxy.url}/sessions/plain/agents", json={"id": f"plain-{i}", "message": message,
                                                                         "agent": "echo"}) as r:
            assert r.status == 201, await r.text()
        path = f"{proxy.url}/sessions/plain/agents/plain-{i}"
        await _until_ready(http, path)
        plain.append(time.monotonic() - began)
        async with http.delete(f"{path}?purge=true"):
            pass
    return {"hook_p50": statistics.median(hook), "plain_p50": statistics.median(plain),
            "notify_p50": statistics.median(notified), "notify_p95": _pct(notified, 0.95),
            "hook_p95": _pct(hook, 0.95), "plain_p95": _pct(plain, 0.95)}


async def load(proxy: Proxy, http: aiohttp.ClientSession, rate: int, seconds: float) -> dict[str, Any]:
    """``rate`` deliveries a second for ``seconds``; what came back."""
    total = int(rate * seconds)
    sent: list[str] = []
    answers: list[tuple[str, int, float]] = []
    errors: list[str] = []
    rng = random.Random(3)

    async def one(delivery: str, number: int) -> None:
        body = _payload(number)
        began = time.monotonic()
        try:
            async with http.post(f"{proxy.url}/hooks/load", data=body, headers=_headers(body, delivery),
                                 timeout=aiohttp.ClientTimeout(total=60)) as reply:
                await reply.read()
                answers.append((delivery, reply.status, time.monotonic() - began))
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    tasks = []
    start = time.monotonic()
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if sent and rng.random() < 0.1:
            delivery, number = rng.choice(sent), 0  # a redelivery: the same id (and so the same agent)
            number = int(delivery.rsplit("-", 1)[1])
        else:
            number = i
            delivery = f"{uuid.uuid4()}-{i}"
            sent.append(delivery)
        tasks.append(asyncio.create_task(one(delivery, number)))
    sending = time.monotonic() - start
    await asyncio.gather(*tasks)
    statuses = Counter(status for _, status, _ in answers)
    made = Counter(delivery for delivery, status, _ in answers if status == 202)
    async with http.get(f"{proxy.url}/agents?session=hook-load") as reply:
        agents = (await reply.json())["agents"]
    return {"sent": total, "answered": len(answers), "errors": errors, "statuses": dict(statuses),
            "doubled": [d for d, n in made.items() if n > 1], "agents": len(agents), "made": sum(made.values()),
            "send_rate": total / sending, "p50": statistics.median(t for _, _, t in answers),
            "p99": _pct([t for _, _, t in answers], 0.99)}


async def schedule_skew(minutes: int, directory: Path) -> dict[str, Any]:
    """Two replicas' schedulers over ``minutes`` of real time; the skew of each fire."""
    from datetime import UTC, datetime

    from agentproxy.triggers.config import parse_triggers
    from agentproxy.triggers.scheduler import ClaimStore, Scheduler

    class Section:
        schedules = {name: {"cron": "* * * * *", "timezone": zone, "prompt": "p"}
                     for name, zone in (("utc", "UTC"), ("berlin", "Europe/Berlin"), ("ny", "America/New_York"))}

    schedules = dict(parse_triggers(Section()).schedules)
    skews: list[float] = []
    fired: Counter[tuple[str, datetime]] = Counter()

    async def fire(schedule: Any, tick: datetime) -> str:
        skews.append((datetime.now(UTC) - tick).total_seconds())
        fired[(schedule.id, tick)] += 1
        return "fired"

    store = ClaimStore(directory / "claims")
    loops = [asyncio.create_task(Scheduler(schedules, store, fire, name).run_forever()) for name in ("r1", "r2")]
    await asyncio.sleep(minutes * 60 + 1)
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    return {"fires": len(skews), "ticks": len(fired), "twice": sum(1 for n in fired.values() if n > 1),
            "p50": statistics.median(skews) if skews else float("nan"),
            "p99": _pct(skews, 0.99) if skews else float("nan")}


async def main_async(args: argparse.Namespace) -> int:
    with open("/proc/loadavg") as f:
        before = f.read().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as tmp:
        receiver = Receiver()
        app = web.Application()
        app.router.add_post("/notify", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        proxy = Proxy(Path(tmp), f"http://127.0.0.1:{port}/notify")
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
                await proxy.ready(http)
                latency = await ready_latency(proxy, http, args.agents, receiver)
                print(f"local: {args.agents} agents; webhook-to-ready p50 {latency['hook_p50'] * 1000:.0f} ms "
                      f"(p95 {latency['hook_p95'] * 1000:.0f} ms), plain create-to-ready p50 "
                      f"{latency['plain_p50'] * 1000:.0f} ms (p95 {latency['plain_p95'] * 1000:.0f} ms); ratio "
                      f"{latency['hook_p50'] / latency['plain_p50']:.2f}")
                print(f"notifications: delete-to-delivered p50 {latency['notify_p50'] * 1000:.0f} ms, "
                      f"p95 {latency['notify_p95'] * 1000:.0f} ms")
                result = await load(proxy, http, args.rate, args.seconds)
                print(f"load: {result['sent']} deliveries at {result['send_rate']:.0f}/s sent, "
                      f"{result['answered']} answered, {len(result['errors'])} errors; statuses {result['statuses']}; "
                      f"agents made {result['agents']} (202s: {result['made']}); doubled {len(result['doubled'])}; "
                      f"answer p50 {result['p50'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms")
                await proxy.delete_all(http)
            if args.schedule_minutes:
                skew = await schedule_skew(args.schedule_minutes, Path(tmp))
                print(f"schedules: {skew['ticks']} ticks fired {skew['fires']} times ({skew['twice']} twice); skew p50 "
                      f"{skew['p50'] * 1000:.0f} ms, p99 {skew['p99'] * 1000:.0f} ms")
                result["doubled"] += ["schedule"] * skew["twice"]
        finally:
            proxy.stop()
            await runner.cleanup()
    with open("/proc/loadavg") as f:
        print(f"load average before {' '.join(before)}, after {' '.join(f.read().split()[:3])}")
    ok = (not result["errors"] and result["answered"] == result["sent"] and not result["doubled"]
          and result["agents"] == result["made"])
    if not ok:
        print(f"FAILED: lost or doubled deliveries: {result['errors'][:3]} {result['doubled'][:3]}", file=sys.stderr)
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10, help="agents of the ready-latency phase")
    parser.add_argument("--rate", type=int, default=100, help="deliveries per second of the load phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    parser.add_argument("--schedule-minutes", type=int, default=0, help="minutes of the schedule phase (0: none)")
    args = parser.parse_args()
    if not (1 <= args.rate <= 1000 and 0 < args.seconds <= 120 and 1 <= args.agents <= 100
            and 0 <= args.schedule_minutes <= 30):
        parser.error("--rate 1-1000, --seconds up to 120, --agents 1-100, --schedule-minutes up to 30: the loops "
                     "are bounded")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
