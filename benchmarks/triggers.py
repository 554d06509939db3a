"""Measure inbound webhooks against a real ``agentproxy serve`` (local mode, echo agents, 127.0.0.1;
with ``--k8s``, k8s mode on the kwok node of the cluster of ``$KUBECONFIG``).

- **webhook-to-agent-ready**: a signed GitHub-style ``issues`` delivery is posted, and the
  agent it makes is polled (``GET .../agents/ID``, every 20 ms) until it is ready; against the
  same through a plain create (``POST /sessions/S/agents`` with the same first message),
  interleaved, so the ratio shows what the hook adds. Each agent is deleted before the next.
  ``--runs`` runs of ``--agents`` agents each; the medians of the runs' figures are reported.
  With ``--k8s`` the proxy runs in k8s mode in a fresh namespace (deleted at the end, and
  waited for); its agents are StatefulSets whose pods kwok marks ready (no agentapi runs), so
  this is the hook's cost against the API server's writes and kwok's, not an agent's start.
- **notification delivery** of every kind, to a receiver in this process (127.0.0.1), each from
  the moment the change is seen to the message's arrival (local mode only: the kinds but
  ``deleted`` need a running agentapi):

  - ``deleted``: from the answer of the agent's delete;
  - ``failed``: an agent whose program exits at once (restarted until the crash loop ends it),
    from its ``failed`` event on ``/events``;
  - ``ready`` after work: a message sent to an echo agent, from agentapi's status turning
    ``stable`` again (polled every 10 ms through the proxy) — the proxy looks at turns once a
    second, so this is up to a second by design;
  - ``waiting_input``: after a message to an echo agent, Claude Code's ``Notification`` hook is
    run as Claude Code runs it (``python3 -m agentproxy.waiting --work-dir DIR``, the event as
    JSON on stdin: a ``permission_prompt``), as no model answers here; from the
    ``waiting_input`` event on ``/events`` (the hook-to-event time is reported too: the proxy
    reads the hook's file when the screen changes, and again 1 and 2.5 s after).
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

Usage: ``python -m benchmarks.triggers [--agents 10] [--runs 3] [--rate 100] [--seconds 30] [--k8s]
[--schedule-minutes 0] [--lease] [--schedules-only]``
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
    """Notifications in: the times each kind of news of each agent arrived."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], list[float]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        message = await request.json()
        self.arrived.setdefault((message["type"], message["agent"]["id"]), []).append(time.monotonic())
        return web.Response(text="ok")

    def count(self, kind: str, agent: str) -> int:
        return len(self.arrived.get((kind, agent), []))

    async def wait(self, kind: str, agent: str, count: int = 1, timeout: float = 60.0) -> float:
        """The arrival of the ``count``-th message of ``kind`` about ``agent`` (inf when none came in time)."""
        deadline = time.monotonic() + timeout
        while self.count(kind, agent) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        times = self.arrived.get((kind, agent), [])
        return times[count - 1] if len(times) >= count else float("inf")


class Events:
    """``GET /events`` read from the start: when each agent was first seen in each status."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.task: asyncio.Task[None] | None = None

    def start(self, http: aiohttp.ClientSession, url: str) -> None:
        self.task = asyncio.create_task(self._read(http, url))

    async def _read(self, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(f"{url}/events", timeout=aiohttp.ClientTimeout(total=None)) as stream:
            async for raw in stream.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    agent = json.loads(line[5:])
                    self.seen.setdefault((agent["id"], agent["status"]), time.monotonic())

    async def wait(self, agent: str, status: str, timeout: float = 60.0) -> float:
        """When ``agent`` was first seen ``status`` on the stream."""
        deadline = time.monotonic() + timeout
        while (agent, status) not in self.seen:
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent {agent} was not seen {status} on /events within {timeout:.0f} s")
            await asyncio.sleep(0.002)
        return self.seen[(agent, status)]

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Proxy:
    """``agentproxy serve`` in a subprocess with its hooks and subscriptions: ``ready`` (its agents'
    ``deleted`` news) and ``load``; in local mode also ``kinds`` (echo agents; ``ready`` and
    ``waiting_input`` news) and ``broken`` (agents whose program exits at once; ``failed`` news).
    With ``namespace``, in k8s mode on that namespace."""

    def __init__(self, directory: Path, notify_url: str, namespace: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = directory / "data"
        first = random.randrange(31000, 39000, 100)
        prompt = "Fix {{ repository.full_name }}#{{ issue.number }}: {{ issue.title }}"
        match = {"events": ["issues"], "actions": ["opened"], "labels": ["bug"]}
        hooks: dict[str, Any] = {
            "ready": {"secret_env": "BENCH_HOOK_SECRET", "agent": "echo", "match": match, "prompt": prompt},
            "load": {"secret_env": "BENCH_HOOK_SECRET", "agent": "echo", "match": match, "prompt": prompt,
                     "max_running": 4}}
        signed = {"url": notify_url, "format": "signed", "secret_env": "BENCH_HOOK_SECRET"}
        notifications: list[dict[str, Any]] = [{"name": "bench", **signed, "events": ["deleted"], "hook": "ready"}]
        config: dict[str, Any] = {"server": {"host": "127.0.0.1", "port": self.port},
                                  "agents": {"max_per_session": 0, "max_per_owner": 0}}
        if namespace is None:
            config["local_mode"] = {"data_dir": str(self.data_dir), "ports": {"start": first, "end": first + 99},
                                    # A crash loop that ends after three quick failures: the failed agent's news.
                                    "supervision": {"backoff_initial": "1s", "backoff_max": "1s",
                                                    "crash_loop_failures": 3}}
            config["agents"]["commands"] = {"broken": ["sh", "-c", "echo 'cannot start' >&2; exit 3"]}
            hooks["kinds"] = {"secret_env": "BENCH_HOOK_SECRET", "agent": "echo", "match": match, "prompt": prompt}
            hooks["broken"] = {"secret_env": "BENCH_HOOK_SECRET", "agent": "broken", "match": match, "prompt": prompt}
            notifications += [{"name": "kinds", **signed, "events": ["ready", "waiting_input"], "hook": "kinds"},
                              {"name": "broken", **signed, "events": ["failed"], "hook": "broken"}]
        else:
            config["k8s_mode"] = {"enabled": True, "namespace": namespace, "pod_address": "pod_ip"}
            config["local_mode"] = {"data_dir": str(self.data_dir)}  # the proxy's own files (dedupe, claims)
        config["triggers"] = {"hooks": hooks, "notifications": notifications, "delivery": {"debounce": "0s"}}
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
                        receiver: Receiver, run: int = 0) -> dict[str, Any]:
    """Webhook-to-ready and create-to-ready, interleaved; delete-to-notification of the hook's agents."""
    notified: list[float] = []
    notified_sent: list[float] = []
    hook: list[float] = []
    plain: list[float] = []
    for n in range(count):
        i = run * 1000 + n
        body = _payload(1000 + i)
        began = time.monotonic()
        async with http.post(f"{proxy.url}/hooks/ready", data=body, headers=_headers(body, str(uuid.uuid4()))) as r:
            assert r.status == 202, await r.text()
            agent = await r.json()
        path = f"{proxy.url}/sessions/{agent['session']}/agents/{agent['id']}"
        await _until_ready(http, path)
        hook.append(time.monotonic() - began)
        asked = time.monotonic()
        async with http.delete(f"{path}?purge=true"):
            deleted = time.monotonic()
        arrived = await receiver.wait("deleted", agent["id"])
        notified.append(arrived - deleted)
        # In k8s mode the watch may tell the deletion before the delete's answer is back.
        notified_sent.append(arrived - asked)
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
            "ratio": statistics.median(hook) / statistics.median(plain), "notified": notified, "notified_sent": notified_sent,
            "hook_p95": _pct(hook, 0.95), "plain_p95": _pct(plain, 0.95)}


def _median_of_runs(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Each figure's median over the runs (the ratio taken within each run first)."""
    return {key: statistics.median(run[key] for run in runs)
            for key in ("hook_p50", "hook_p95", "plain_p50", "plain_p95", "ratio")}


async def _deliver(proxy: Proxy, http: aiohttp.ClientSession, hook: str, number: int) -> dict[str, Any]:
    body = _payload(number)
    async with http.post(f"{proxy.url}/hooks/{hook}", data=body, headers=_headers(body, str(uuid.uuid4()))) as r:
        assert r.status == 202, await r.text()
        return dict(await r.json())


async def _status_until(http: aiohttp.ClientSession, url: str, wanted: str, timeout: float = 60.0) -> float:
    """Poll agentapi's status through the proxy every 10 ms; when it was first seen ``wanted``."""
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(f"{url}/api/status") as reply:
            status = (await reply.json())["status"]
        if status == wanted:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url}: agentapi never {wanted} ({status})")
        await asyncio.sleep(0.01)


async def _say(http: aiohttp.ClientSession, url: str, text: str) -> None:
    async with http.post(f"{url}/api/message", json={"content": text, "type": "user"}) as reply:
        assert reply.status == 200, await reply.text()


def _ask_as_claude_code(work_dir: Path) -> None:
    """What Claude Code does when it asks for a permission: run its ``Notification`` hook (the
    command the proxy set in the agent's prepared home) with the event as JSON on stdin."""
    event = {"session_id": "bench", "hook_event_name": "Notification", "notification_type": "permission_prompt",
             "message": "Claude needs your permission to use Bash", "cwd": str(work_dir)}
    subprocess.run([sys.executable, "-m", "agentproxy.waiting", "--work-dir", str(work_dir)],
                   input=json.dumps(event), text=True, check=True, timeout=30)


async def notification_kinds(proxy: Proxy, http: aiohttp.ClientSession, count: int, receiver: Receiver,
                             events: Events) -> dict[str, list[float]]:
    """Seconds from each change to its notification's arrival, by kind (see the module's docstring);
    ``waiting_hook``: from the hook's run to the ``waiting_input`` event."""
    out: dict[str, list[float]] = {"failed": [], "ready": [], "waiting_input": [], "waiting_hook": []}
    for i in range(count):  # failed: one agent after the other, so that each is measured alone
        agent = await _deliver(proxy, http, "broken", 5000 + i)
        seen = await events.wait(agent["id"], "failed")
        out["failed"].append(await receiver.wait("failed", agent["id"]) - seen)
        async with http.delete(f"{proxy.url}/sessions/{agent['session']}/agents/{agent['id']}?purge=true"):
            pass
    agent = await _deliver(proxy, http, "kinds", 6000)
    url = f"{proxy.url}/sessions/{agent['session']}/agents/{agent['id']}"
    await _until_ready(http, url)
    await receiver.wait("ready", agent["id"])  # the first prompt's turn
    pause = random.Random(5)
    for i in range(count):
        told = receiver.count("ready", agent["id"])
        # The proxy looks at turns once a second: a pause of a random part of a second, so that the
        # turns do not keep in step with its looks (each turn starts as the previous one was told).
        await asyncio.sleep(pause.random())
        await _status_until(http, url, "stable")
        await _say(http, url, f"turn {i}")
        try:  # agentapi runs while the screen changes, and turns stable once it stays still
            await _status_until(http, url, "running", timeout=3.0)
        except RuntimeError:
            pass  # over before the first look: the next look sees it stable
        stable = await _status_until(http, url, "stable")
        out["ready"].append(await receiver.wait("ready", agent["id"], told + 1) - stable)
    for i in range(count):
        events.seen.pop((agent["id"], "waiting_input"), None)
        told = receiver.count("waiting_input", agent["id"])
        await _status_until(http, url, "stable")
        await _say(http, url, f"question {i}")  # the screen changes, as when Claude Code asks
        await asyncio.to_thread(_ask_as_claude_code, proxy.data_dir / "work" / agent["id"])
        asked = time.monotonic()
        seen = await events.wait(agent["id"], "waiting_input")
        out["waiting_hook"].append(seen - asked)
        out["waiting_input"].append(await receiver.wait("waiting_input", agent["id"], told + 1) - seen)
        events.seen.pop((agent["id"], "ready"), None)
        await _status_until(http, url, "stable")  # agentapi takes messages only then
        await _say(http, url, f"answer {i}")  # a message answers the question: ready again
        await events.wait(agent["id"], "ready")
    async with http.delete(f"{url}?purge=true"):
        pass
    return out


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
        for client in clients:
            await client.close()
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
        twice = _report_skew(await schedule_skew(args.schedule_minutes, Path(tmp), args.kubeconfig if args.lease else None))
    with open("/proc/loadavg") as f:
        print(f"load average before {' '.join(before)}, after {' '.join(f.read().split()[:3])}")
    if twice:
        print(f"FAILED: {twice} ticks fired twice", file=sys.stderr)
    return 1 if twice else 0


def _ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:.1f} ms, p95 {_pct(values, 0.95) * 1000:.1f} ms (n={len(values)})"


async def _measure(proxy: Proxy, http: aiohttp.ClientSession, receiver: Receiver,
                   args: argparse.Namespace) -> dict[str, Any] | None:
    """The latency runs, then in local mode the notifications' kinds and the load; the load's result."""
    mode = "k8s (kwok node)" if args.k8s else "local"
    runs = []
    for run in range(args.runs):
        figures = await ready_latency(proxy, http, args.agents, receiver, run)
        runs.append(figures)
        print(f"{mode} run {run + 1}: {args.agents} agents; webhook-to-ready p50 {figures['hook_p50'] * 1000:.0f} ms "
              f"(p95 {figures['hook_p95'] * 1000:.0f} ms), plain create-to-ready p50 "
              f"{figures['plain_p50'] * 1000:.0f} ms (p95 {figures['plain_p95'] * 1000:.0f} ms); ratio "
              f"{figures['ratio']:.2f}", flush=True)
    median = _median_of_runs(runs)
    print(f"{mode}, median of {args.runs} runs: webhook-to-ready p50 {median['hook_p50'] * 1000:.0f} ms "
          f"(p95 {median['hook_p95'] * 1000:.0f} ms), plain create-to-ready p50 {median['plain_p50'] * 1000:.0f} ms "
          f"(p95 {median['plain_p95'] * 1000:.0f} ms); ratio of the p50s {median['ratio']:.2f}")
    print(f"notifications: deleted, from the delete's answer: {_ms([t for r in runs for t in r['notified']])}; "
          f"from its request: {_ms([t for r in runs for t in r['notified_sent']])}")
    if args.k8s:
        return None
    events = Events()
    events.start(http, proxy.url)
    try:
        kinds = await notification_kinds(proxy, http, args.agents, receiver, events)
    finally:
        await events.stop()
    print(f"notifications: failed, from the failed event: {_ms(kinds['failed'])}")
    print(f"notifications: ready after work, from agentapi stable: {_ms(kinds['ready'])}")
    print(f"notifications: waiting_input, from the waiting_input event: {_ms(kinds['waiting_input'])} "
          f"(Claude Code's hook run to the event: {_ms(kinds['waiting_hook'])})", flush=True)
    result = await load(proxy, http, args.rate, args.seconds)
    print(f"load: {result['sent']} deliveries at {result['send_rate']:.0f}/s sent, "
          f"{result['answered']} answered, {len(result['errors'])} errors; statuses {result['statuses']}; "
          f"agents made {result['agents']} (202s: {result['made']}); doubled {len(result['doubled'])}; "
          f"answer p50 {result['p50'] * 1000:.1f} ms, p99 {result['p99'] * 1000:.1f} ms")
    return result


async def _proxy_namespace(kubeconfig: str) -> tuple[Any, str]:
    """A client of the cluster and a fresh namespace for the proxy in k8s mode."""
    from agentproxy.backends.k8s.client import Client

    from .k8s import _namespace

    client = await Client.connect(kubeconfig)
    return client, await _namespace(client)


async def main_async(args: argparse.Namespace) -> int:
    if args.schedules_only:
        return await schedules_only(args)
    with open("/proc/loadavg") as f:
        before = f.read().split()[:3]
    result: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-triggers-") as tmp:
        receiver = Receiver()
        app = web.Application()
        app.router.add_post("/notify", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client, namespace = await _proxy_namespace(args.kubeconfig) if args.k8s else (None, None)
        proxy = None
        try:
            proxy = Proxy(Path(tmp), f"http://127.0.0.1:{port}/notify", namespace)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as http:
                await proxy.ready(http)
                try:
                    result = await _measure(proxy, http, receiver, args)
                finally:
                    # Also after a failure: local agents outlive their proxy (it adopts them again).
                    await proxy.delete_all(http)
            if args.schedule_minutes:
                leases = args.kubeconfig if args.lease else None  # --k8s alone: file claims only
                twice = _report_skew(await schedule_skew(args.schedule_minutes, Path(tmp), leases))
                if result is not None:
                    result["doubled"] += ["schedule"] * twice
        finally:
            if proxy is not None:
                proxy.stop()
            await runner.cleanup()
            if client is not None and namespace is not None:
                from .k8s import _drop_namespaces
                await _drop_namespaces(client, [namespace])
                await client.close()
    with open("/proc/loadavg") as f:
        print(f"load average before {' '.join(before)}, after {' '.join(f.read().split()[:3])}")
    if result is None:
        return 0
    ok = (not result["errors"] and result["answered"] == result["sent"] and not result["doubled"]
          and result["agents"] == result["made"])
    if not ok:
        print(f"FAILED: lost or doubled deliveries: {result['errors'][:3]} {result['doubled'][:3]}", file=sys.stderr)
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10,
                        help="agents of each ready-latency run, and messages of each notification kind")
    parser.add_argument("--runs", type=int, default=3, help="runs of the ready-latency phase (their medians)")
    parser.add_argument("--k8s", action="store_true",
                        help="the proxy in k8s mode on the cluster of $KUBECONFIG (its kwok node), in a fresh "
                             "namespace: the ready-latency phase only")
    parser.add_argument("--rate", type=int, default=100, help="deliveries per second of the load phase")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load phase")
    parser.add_argument("--schedule-minutes", type=int, default=0, help="minutes of the schedule phase (0: none)")
    parser.add_argument("--lease", action="store_true",
                        help="in the schedule phase, also claim through Leases in the cluster of $KUBECONFIG")
    parser.add_argument("--schedules-only", action="store_true", help="run only the schedule phase")
    args = parser.parse_args()
    if not (1 <= args.rate <= 1000 and 0 < args.seconds <= 120 and 1 <= args.agents <= 100
            and 0 <= args.schedule_minutes <= 30 and 1 <= args.runs <= 20):
        parser.error("--rate 1-1000, --seconds up to 120, --agents 1-100, --runs 1-20, --schedule-minutes up to "
                     "30: the loops are bounded")
    if (args.lease or args.schedules_only) and not args.schedule_minutes:
        parser.error("--lease and --schedules-only need --schedule-minutes N (1-30)")
    args.kubeconfig = None
    if args.lease or args.k8s:
        from .cluster_check import require_cluster
        args.kubeconfig = require_cluster("triggers")
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
