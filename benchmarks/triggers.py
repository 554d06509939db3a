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
  time from the tick to the fire. With ``--lease``, a second pair claims through Leases in a
  fresh namespace of the cluster of ``$KUBECONFIG`` (each replica its own client) at the same
  time, and the ratio of its skews to the file pair's is reported. ``--schedules-only`` runs
  this phase alone.

Usage: ``python -m benchmarks.triggers [--agents 10] [--rate 100] [--seconds 30] [--schedule-minutes 0]
[--lease] [--schedules-only]``
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


async def _claims_namespace(kubeconfig: str) -> tuple[list[Any], str]:
    """Two clients of the cluster (one per replica, as two proxies have) and a fresh namespace."""
    from agentproxy.backends.k8s.client import Client

    clients = [await Client.connect(kubeconfig) for _ in range(2)]
    name = f"bench-schedules-{uuid.uuid4().hex[:8]}"
    await clients[0].request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                                 "metadata": {"name": name}})
    return clients, name


async def schedule_skew(minutes: int, directory: Path, kubeconfig: str | None = None) -> dict[str, dict[str, Any]]:
    """Two replicas' schedulers over ``minutes`` of real time; the skew of each fire, by claim
    store: ``file`` (one locked file), and with ``kubeconfig`` also ``lease`` (a Lease per schedule
    in a fresh namespace of that cluster, deleted after), both at once so they share the load."""
    from datetime import UTC, datetime

    from agentproxy.backends.k8s.leases import ScheduleLeases
    from agentproxy.triggers.config import parse_triggers
    from agentproxy.triggers.scheduler import ClaimStore, Scheduler

    class Section:
        schedules = {name: {"cron": "* * * * *", "timezone": zone, "prompt": "p"}
                     for name, zone in (("utc", "UTC"), ("berlin", "Europe/Berlin"), ("ny", "America/New_York"))}

    schedules = dict(parse_triggers(Section()).schedules)
    skews: dict[str, list[float]] = {}
    fired: dict[str, Counter[tuple[str, datetime]]] = {}

    def firing(kind: str) -> Any:
        async def fire(schedule: Any, tick: datetime) -> str:
            skews[kind].append((datetime.now(UTC) - tick).total_seconds())
            fired[kind][(schedule.id, tick)] += 1
            return "fired"
        return fire

    stores: dict[str, list[Any]] = {"file": [ClaimStore(directory / "claims")] * 2}
    clients: list[Any] = []
    namespace = ""
    if kubeconfig:
        clients, namespace = await _claims_namespace(kubeconfig)
        stores["lease"] = [ScheduleLeases(client, namespace, "agentproxy-bench") for client in clients]
    loops = []
    for kind, pair in stores.items():
        skews[kind], fired[kind] = [], Counter()
        loops += [asyncio.create_task(Scheduler(schedules, store, firing(kind), f"{kind}-r{n}").run_forever())
                  for n, store in enumerate(pair)]
    try:
        await asyncio.sleep(minutes * 60 + 1)
    finally:
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if clients:
            await clients[0].request("DELETE", f"/api/v1/namespaces/{namespace}")
    return {kind: {"fires": len(skews[kind]), "ticks": len(fired[kind]),
                   "twice": sum(1 for n in fired[kind].values() if n > 1),
                   "p50": statistics.median(skews[kind]) if skews[kind] else float("nan"),
                   "p99": _pct(skews[kind], 0.99) if skews[kind] else float("nan")} for kind in stores}


def _report_skew(skew: dict[str, dict[str, Any]]) -> int:
    """Print the schedule phase; the ticks fired twice (there must be none)."""
    for kind, figures in skew.items():
        print(f"schedules ({kind} claims): {figures['ticks']} ticks fired {figures['fires']} times "
              f"({figures['twice']} twice); skew p50 {figures['p50'] * 1000:.0f} ms, p99 {figures['p99'] * 1000:.0f} ms")
    if "lease" in skew:
        print(f"schedules: lease / file skew ratio p50 {skew['lease']['p50'] / skew['file']['p50']:.2f}, "
              f"p99 {skew['lease']['p99'] / skew['file']['p99']:.2f}")
    return sum(figures["twice"] for figures in skew.values())


async def schedules_only(args: argparse.Namespace) -> int:
    """Only the schedule phase (``--schedules-only``)."""
    with open("/proc/loadavg") as f:
        before = f.read().split()[:3]
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as tmp:
        twice = _report_skew(await schedule_skew(args.schedule_minutes, Path(tmp), args.kubeconfig))
    with open("/proc/loadavg") as f:
        print(f"load average before {' '.join(before)}, after {' '.join(f.read().split()[:3])}")
    if twice:
        print(f"FAILED: {twice} ticks fired twice", file=sys.stderr)
    return 1 if twice else 0


async def main_async(args: argparse.Namespace) -> int:
    if args.schedules_only:
        return await schedules_only(args)
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
                twice = _report_skew(await schedule_skew(args.schedule_minutes, Path(tmp), args.kubeconfig))
                result["doubled"] += ["schedule"] * twice
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
    parser.add_argument("--lease", action="store_true",
                        help="in the schedule phase, also claim through Leases in the cluster of $KUBECONFIG")
    parser.add_argument("--schedules-only", action="store_true", help="run only the schedule phase")
    args = parser.parse_args()
    if not (1 <= args.rate <= 1000 and 0 < args.seconds <= 120 and 1 <= args.agents <= 100
            and 0 <= args.schedule_minutes <= 30):
        parser.error("--rate 1-1000, --seconds up to 120, --agents 1-100, --schedule-minutes up to 30: the loops "
                     "are bounded")
    if (args.lease or args.schedules_only) and not args.schedule_minutes:
        parser.error("--lease and --schedules-only need --schedule-minutes N (1-30)")
    args.kubeconfig = None
    if args.lease:
        from .cluster_check import require_cluster
        args.kubeconfig = require_cluster("triggers")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
