"""agentproxy at scale on the cluster ``$KUBECONFIG`` names: ``--agents`` agents (default
10,000) on its kwok node, created through the HTTP API of two ``agentproxy serve`` replicas on
one fresh namespace.

In one run:

1. for each size of ``--at-once`` (default 200 and 2,000), the create floor: the four objects
   of that many agents written by the smallest client there is (kr8s's HTTP session, one
   server-side apply per object, an agent's objects one after the other) at each concurrency
   of ``--floor-concurrency``, each in a namespace of its own that is deleted and gone before
   the next measurement; the best is the floor. Then as many agents created through the
   replicas' HTTP API, all at once, and the ratio of the two times, with the API requests per
   create (the replicas' ``k8s_api_requests_total``); for each, where the CPU went meanwhile
   (the control plane's processes, the client, the replicas, the whole machine), and the
   seconds until every agent's pod is made (the cluster's own work on what was written, which
   the floor's clock, stopped at its last write, leaves out);
2. the other agents created through the API (as many at once as the first size, the replicas
   in turns), two of them in a session of their own; seconds until both replicas list them all
   and until they are ready;
3. on each replica: ``GET /agents`` and a session of 2 over HTTP (p50 / p95; the lists of all
   taking turns with their floor, the same bytes from the barest aiohttp handler), RSS (and per agent
   over the replica's RSS with none), CPU while idle over ``--idle`` seconds once no watch
   event came for 5 s (up to ``--settle`` seconds waited: the cluster binds volumes and reports
   pods for a while after the last create); the API server's and etcd's CPU in the same window
   and their RSS. On the test cluster, idle once more with its controllers, scheduler and kwok
   paused (SIGSTOP, then SIGCONT): the replicas' own cost of watching every agent, which a
   cluster still at work on thousands of new agents (a volume binder of about one claim a
   second on two cores) hides under the cost of its changes;
4. status changes: ``--changes`` agents suspended through one replica, seconds from the answer
   until the other replica shows it (p50 / p95); drift: as many Services changed out of band
   (a label, by another field manager), seconds until the label is back (p50 / p95);
5. a replica killed (SIGKILL) and started again: seconds until ``/readyz`` (and as a multiple
   of the floor, the five kinds' lists alone by the smallest client just before) and until it lists
   every agent, the list and watch requests it made, and the repairs, prunes and removed claims
   it counted meanwhile (none is right); on the test cluster once more with its controllers
   paused (the lists of a cluster at rest); the agents still there afterwards.

The agents' namespace is deleted at the end (and waited for, up to ``--cleanup-timeout``
seconds), and with it every agent. Usage:
``KUBECONFIG=... python -m benchmarks.scale [--agents 10000] [--idle 10] [--changes 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import kr8s.asyncio
import psutil
from prometheus_client.parser import text_string_to_metric_families

from agentproxy import naming
from agentproxy.backends.k8s.cache import LIST_PAGE
from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.kinds import KINDS, Kind, kind_of, path_of
from agentproxy.render import render_agent
from agentproxy.spec import build_spec
from testenv import procs

from .k8s import _drop_namespaces, _http_timings, _namespace, _settings, percentile
from .list_local import http_cpu

POLL = 0.02
QUIET = 5.0
"""Seconds without a watch event after which the replicas count as idle."""
REPO = Path(__file__).resolve().parent.parent
"""The checkout the benchmarks run from (``-m benchmarks.bare_body`` is found there)."""
LIST_ROUNDS = 5
"""Turns the lists of the replicas and of their floor take (each round a share of ``--requests``)."""
WATCH_EVENTS = "agentproxy_k8s_watch_events_total"
"""The replicas' count of watch events (labelled by the watch's kind)."""
SMALL = "small"
FLOOR_MANAGER = "floor-bench"


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e3:.2f} ms / {percentile(values, 0.95) * 1e3:.2f} ms"


def _seconds(value: float | None) -> str:
    return "not within the ready timeout" if value is None else f"{value:.2f} s"


def _s(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s / {percentile(values, 0.95):.3f} s (n={len(values)})"


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> float | None:
    """Seconds until ``check()`` holds, None when it did not within ``timeout``."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            return None
        await asyncio.sleep(POLL)
    return time.monotonic() - started


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One ``agentproxy serve`` in k8s mode on the namespace, its log in ``directory``."""

    def __init__(self, namespace: str, directory: Path, http: aiohttp.ClientSession,
                 overrides: tuple[str, ...] = ()) -> None:
        self.namespace = namespace
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.argv = [sys.executable, "-m", "agentproxy", "serve", "--set", "k8s_mode.enabled=true",
                     "--set", f"k8s_mode.namespace={namespace}", "--set", "k8s_mode.pod_address=pod_ip",
                     "--set", "agents.max_per_session=0", "--set", "agents.max_per_owner=0",
                     "--set", f"server.port={self.port}"]
        for override in overrides:
            self.argv += ["--set", override]
        self.log = directory / f"serve-{self.port}.log"
        self.http = http
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = await asyncio.create_subprocess_exec(*self.argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                             stdin=asyncio.subprocess.DEVNULL)

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    async def call(self, method: str, path: str, body: Any = None, timeout: float = 120.0) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {"timeout": aiohttp.ClientTimeout(total=timeout)}
        if body is not None:
            kwargs["json"] = body
        async with self.http.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    async def ready(self) -> bool:
        if self.proc is None or self.proc.returncode is not None:
            raise SystemExit(f"agentproxy serve exited ({self.log}):\n{self.log.read_text()[-3000:]}")
        try:
            return (await self.call("GET", "/readyz", timeout=10))[0] == 200
        except (TimeoutError, aiohttp.ClientError):
            return False

    async def count(self, status: str | None = None) -> int:
        try:
            code, body = await self.call("GET", "/agents" + (f"?status={status}" if status else ""))
        except (TimeoutError, aiohttp.ClientError):
            return -1
        return len(body["agents"]) if code == 200 else -1

    async def metrics(self) -> dict[str, float]:
        """The samples of ``/metrics``, summed over their labels, by name."""
        sums: dict[str, float] = {}
        for family in await self._families():
            for sample in family.samples:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
        return sums

    async def metric_by(self, name: str, label: str) -> dict[str, float]:
        """The samples of one metric of ``/metrics``, by the value of one of their labels."""
        return {sample.labels.get(label, ""): sample.value for family in await self._families()
                for sample in family.samples if sample.name == name}

    async def _families(self) -> list[Any]:
        async with self.http.get(f"{self.base}/metrics") as resp:
            return list(text_string_to_metric_families(await resp.text()))

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


CONTROLLERS = ("kube-controller-manager", "kube-scheduler", "kwok")
"""The test cluster's processes that change its objects on their own (none runs leader election:
paused, no lease of theirs runs out)."""
CONTROL_PLANE = ("kube-apiserver", "etcd", *CONTROLLERS)
"""The test cluster's processes whose CPU the creates' rows share out."""


def _control_plane(names: tuple[str, ...] = ("kube-apiserver", "etcd")) -> dict[str, psutil.Process]:
    """The processes ``names`` of the cluster ``$KUBECONFIG`` belongs to, by the test cluster's own
    check of the pid files it keeps beside it (a pid since reused is not taken: some of these are
    paused); none for another cluster."""
    state = Path(os.environ.get("KUBECONFIG", "")).resolve().parent
    return {name: proc for name in names if (proc := procs.owned_process(state, name)) is not None}


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _machine_busy() -> float:
    """CPU seconds the machine's cores spent on anything but idling, since boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - getattr(times, "guest", 0.0) \
        - getattr(times, "guest_nice", 0.0)


class CpuShares:
    """Where the machine's CPU went between :meth:`__init__` and :meth:`row`: the control plane's
    processes, this benchmark's own (the floor's client, or the HTTP client of the creates), the
    replicas, and everything the machine did. On two cores the creates are as fast as the CPU
    all of these need allows: a machine busy all along has no core left for a faster run."""

    def __init__(self, replicas: list[Replica] | None = None) -> None:
        self.plane = _control_plane(CONTROL_PLANE)
        self.replicas = [r.process for r in replicas or []]
        self.me = psutil.Process()
        self.t0 = time.monotonic()
        self.cpu0 = self._now()

    def _now(self) -> dict[str, float]:
        now = {name: _cpu(proc) for name, proc in self.plane.items()}
        now["client"] = _cpu(self.me)
        now["replicas"] = sum(_cpu(p) for p in self.replicas)
        now["machine"] = _machine_busy()
        return now

    def row(self) -> str:
        """CPU seconds of each part since the start, and how busy the machine was."""
        wall = time.monotonic() - self.t0
        used = {name: value - self.cpu0[name] for name, value in self._now().items()}
        cores = os.cpu_count() or 1
        controllers = sum(used.get(n, 0.0) for n in CONTROLLERS)
        parts = [f"API server {used.get('kube-apiserver', 0.0):.1f}", f"etcd {used.get('etcd', 0.0):.1f}",
                 f"controllers, scheduler, kwok {controllers:.1f}", f"client {used['client']:.1f}"]
        if self.replicas:
            parts.append(f"replicas {used['replicas']:.1f}")
        return (", ".join(parts) + f" s; machine busy {used['machine']:.1f} of {cores * wall:.1f} core-s "
                f"({used['machine'] / (cores * wall) * 100:.0f} %)")


async def pods_in(admin: Client, namespace: str) -> int:
    """The pods of ``namespace``, counted by one request of one item (the API server says how
    many remain), so that counting them often costs the server next to nothing."""
    found = await admin.request("GET", f"/api/v1/namespaces/{namespace}/pods", params={"limit": "1"})
    return len(found.get("items") or []) + int((found.get("metadata") or {}).get("remainingItemCount") or 0)


async def until_pods(admin: Client, namespace: str, count: int, t0: float, timeout: float) -> float | None:
    """Seconds from ``t0`` until ``namespace`` holds ``count`` pods (made by the StatefulSet
    controller from what was written): the cluster's own work on the agents, which a client
    that stops its clock at its last write leaves out (None: not within ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pods_in(admin, namespace) >= count:
            return time.monotonic() - t0
        await asyncio.sleep(0.5)
    return None


async def floor(api: kr8s.asyncio.Api, namespace: str, count: int, concurrency: int, prefix: str) -> float:
    """Seconds to write the objects of ``count`` agents by server-side apply, ``concurrency`` agents at once."""
    settings = _settings(namespace)
    manifests = [render_agent(settings, build_spec(settings, "floor", f"{prefix}{i}", "echo")) for i in range(count)]
    gate = asyncio.Semaphore(concurrency)

    async def apply(obj: dict[str, Any]) -> None:
        base, _, rest = path_of(obj).lstrip("/").partition("/")
        async with api.call_api("PATCH", version="", base=f"/{base}", url=rest, content=json.dumps(obj),
                                params={"fieldManager": FLOOR_MANAGER, "force": "true"},
                                headers={"Content-Type": "application/apply-patch+yaml"}) as resp:
            if resp.status_code >= 400:
                raise SystemExit(f"the floor's apply of {kind_of(obj).name} failed: {resp.status_code} {resp.text}")

    async def agent(objects: list[dict[str, Any]]) -> None:
        async with gate:
            for obj in objects:
                await apply(obj)

    t0 = time.monotonic()
    await asyncio.gather(*(agent(m) for m in manifests))
    return time.monotonic() - t0


async def create(replicas: list[Replica], ids: list[tuple[str, str]], concurrency: int) -> float:
    """Seconds to create the agents ``ids`` (session, id) through the replicas in turns, ``concurrency`` at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int, session: str, agent_id: str) -> None:
        async with gate:
            code, body = await replicas[n % len(replicas)].call("POST", f"/sessions/{session}/agents",
                                                                {"id": agent_id, "agent": "echo"}, timeout=600)
            if code != 201:
                raise SystemExit(f"create of {agent_id} answered {code}: {body}")

    t0 = time.monotonic()
    await asyncio.gather(*(one(n, s, a) for n, (s, a) in enumerate(ids)))
    return time.monotonic() - t0


async def _floor_and_creates(api: kr8s.asyncio.Api, admin: Client, args: argparse.Namespace,
                             replicas: list[Replica], rows: list[tuple[str, str]]) -> int:
    """Phases 1 and 2: for each size of ``--at-once``, the floor and agentproxy's creates at
    once; then the other creates; the agents made."""
    made = 0
    for size in args.at_once:
        made += await _against_floor(api, admin, args, replicas, size, made, rows)
    batch = args.at_once[0]
    rest = [(SMALL, "s0"), (SMALL, "s1")] + [("bench", f"a{i}") for i in range(args.agents - made - 2)]
    t0 = time.monotonic()
    wall = await create(replicas, rest, batch) if rest else 0.0
    rows.append((f"the other {len(rest)} creates, {batch} at once",
                 f"{wall:.1f} s ({len(rest) / max(wall, 1e-9):.0f}/s)"))
    n = made + len(rest)

    async def all_listed() -> bool:
        return all(c == n for c in await asyncio.gather(*(r.count() for r in replicas)))
    listed = await _until(all_listed, args.ready_timeout)
    rows.append((f"both replicas list all {n} (after the last create)",
                 f"{listed:.1f} s" if listed is not None else f"not within {args.ready_timeout:g} s"))

    async def all_ready() -> bool:
        return await replicas[0].count("ready") == n
    ready = await _until(all_ready, args.ready_timeout)
    rows.append((f"all {n} ready (kwok pods; from the first of the other creates)",
                 f"{time.monotonic() - t0:.1f} s" if ready is not None
                 else f"{await replicas[0].count('ready')} ready after {args.ready_timeout:g} s more"))
    return n


async def _against_floor(api: kr8s.asyncio.Api, admin: Client, args: argparse.Namespace,
                         replicas: list[Replica], size: int, made: int, rows: list[tuple[str, str]]) -> int:
    """``size`` agents written by the smallest client at each concurrency of
    ``--floor-concurrency`` (each in a namespace of its own, deleted and gone before the next
    measurement, so that no deletion runs during one), then ``size`` creates at once through
    the replicas (agents ``c{made}`` on); the agents made."""
    floors: dict[int, float] = {}
    pods: dict[int, float | None] = {}
    cpu: dict[int, str] = {}
    for concurrency in sorted({min(c, size) for c in args.floor_concurrency}):
        namespace = await _namespace(admin)
        try:
            shares = CpuShares()
            floors[concurrency] = await floor(api, namespace, size, concurrency, "f")
            cpu[concurrency] = shares.row()
            pods[concurrency] = await until_pods(admin, namespace, size, shares.t0, args.ready_timeout)
        finally:
            await _drop_namespaces(admin, [namespace], wait=args.cleanup_timeout)
    best = min(floors, key=floors.__getitem__)
    for concurrency, seconds in floors.items():
        rows += [(f"floor: {size} agents' 4 objects, smallest client, {concurrency} agents at once",
                  f"{seconds:.2f} s{' (best)' if concurrency == best else ''}"),
                 ("  CPU meanwhile", cpu[concurrency]),
                 ("  every agent's pod made (from the first write)", _seconds(pods[concurrency]))]
    requests = "agentproxy_k8s_api_requests_total"
    calls = [(await r.metrics()).get(requests, 0.0) for r in replicas]
    shares = CpuShares(replicas)
    wall = await create(replicas, [("bench", f"c{made + i}") for i in range(size)], size)
    ours = shares.row()
    used = sum([(await r.metrics()).get(requests, 0.0) for r in replicas]) - sum(calls)
    made_pods = await until_pods(admin, replicas[0].namespace, made + size, shares.t0, args.ready_timeout)
    floor_pods = min((p for p in pods.values() if p is not None), default=None)
    rows += [(f"agentproxy: {size} creates at once over HTTP (two replicas)", f"{wall:.2f} s"),
             ("  CPU meanwhile", ours),
             ("  agentproxy time / floor time (lower is faster)", f"{wall / floors[best]:.2f}x"),
             ("  every agent's pod made (from the first create)", _seconds(made_pods)
              + (f", {made_pods / floor_pods:.2f}x the floor's best" if made_pods and floor_pods else "")),
             ("  API requests per create (both replicas, everything they sent meanwhile)", f"{used / size:.2f}")]
    return size


async def _reads(args: argparse.Namespace, replicas: list[Replica], n: int, empty_rss: list[int],
                 rows: list[tuple[str, str]], workdir: Path) -> None:
    """Phase 3: lists, memory, idle CPU of the replicas and of the control plane."""
    lists = await _lists_against_their_floor(args, replicas, workdir)
    floor_p50 = statistics.median(lists[-1][0])
    for k, replica in enumerate(replicas):
        every, size, client_cpu, server_cpu = lists[k]
        small, _ = await asyncio.to_thread(_http_timings, replica.port, f"/sessions/{SMALL}/agents",
                                           args.requests * 10)
        rss = replica.process.memory_info().rss
        rows += [(f"replica {k}: GET /agents, {n} agents ({size / 1e6:.1f} MB) p50 / p95",
                  f"{_ms(every)}, {statistics.median(every) / floor_p50:.2f}x the floor's p50 (CPU a request: "
                  f"client {client_cpu * 1e3:.1f} ms, replica {server_cpu * 1e3:.1f} ms)"),
                 (f"replica {k}: GET /sessions/S/agents, 2 of {n} p50 / p95", _ms(small)),
                 (f"replica {k}: RSS", f"{rss / 1e6:.0f} MB ({(rss - empty_rss[k]) / n / 1024:.1f} KiB per "
                  f"agent over {empty_rss[k] / 1e6:.0f} MB with none)")]
    floor, size, client_cpu, server_cpu = lists[-1]
    rows.append((f"floor: the same {size / 1e6:.1f} MB from a bare aiohttp handler, p50 / p95, taking turns",
                 f"{_ms(floor)} (CPU a request: client {client_cpu * 1e3:.1f} ms, server {server_cpu * 1e3:.1f} ms)"))
    # Idle is when nothing changes: the cluster goes on binding volumes and reporting pods for a
    # while after the last create, and every change is work for both replicas.
    quiet = await _quiet(replicas, QUIET, args.settle)
    rows.append((f"watches quiet (no change for {QUIET:g} s) after",
                 f"{quiet:.0f} s" if quiet is not None else f"not within {args.settle:g} s (measured anyway)"))
    rows += await _idle(replicas, args.idle, "")
    still = _control_plane(CONTROLLERS)
    if still:  # the test cluster: its controllers are processes of this machine, which can be paused
        with _paused(still.values()):
            await _quiet(replicas, QUIET, 6 * QUIET)
            rows += await _idle(replicas, args.idle, ", the cluster's controllers paused")


async def _lists_against_their_floor(args: argparse.Namespace, replicas: list[Replica],
                                     workdir: Path) -> list[tuple[list[float], int, float, float]]:
    """``GET /agents`` of each replica, then of the floor (replica 0's body served by the barest
    aiohttp handler, :mod:`benchmarks.bare_body`), in rounds taking turns so that each meets
    the same load of the cluster: the latencies, body size, and CPU a request of the client
    and of the server (a replica's includes what its watches cost meanwhile) of each."""
    body = workdir / "agents.json"
    body.write_bytes(await asyncio.to_thread(_body, replicas[0].port, "/agents"))
    port = _free_port()
    with open(workdir / "bare-body.log", "ab") as out:
        bare = await asyncio.create_subprocess_exec(sys.executable, "-m", "benchmarks.bare_body", str(body), str(port),
                                                    stdout=out, stderr=asyncio.subprocess.STDOUT,
                                                    stdin=asyncio.subprocess.DEVNULL, cwd=REPO)
    try:
        if await _until(lambda: _answers(port), 30) is None:
            raise SystemExit(f"the bare list server did not answer within 30 s; see {workdir / 'bare-body.log'}")
        targets = [(r.port, r.process) for r in replicas] + [(port, psutil.Process(bare.pid))]
        timings: list[list[float]] = [[] for _ in targets]
        client_cpu, server_cpu, size = [0.0] * len(targets), [0.0] * len(targets), 0
        rounds = max(1, min(LIST_ROUNDS, args.requests))
        for round_ in range(rounds):
            count = args.requests // rounds + (round_ < args.requests % rounds)
            for k, (target, process) in enumerate(targets):
                before = _cpu(process)
                took, size, cpu = await asyncio.to_thread(http_cpu, target, "/agents", count)
                server_cpu[k] += _cpu(process) - before
                client_cpu[k] += cpu * count
                timings[k] += took
        return [(timings[k], size, client_cpu[k] / len(timings[k]), server_cpu[k] / len(timings[k]))
                for k in range(len(targets))]
    finally:
        if bare.returncode is None:
            bare.terminate()
        await bare.wait()


def _body(port: int, path: str) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET {path} answered {response.status}")
        return response.read()
    finally:
        conn.close()


async def _answers(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def _idle(replicas: list[Replica], seconds: float, what: str) -> list[tuple[str, str]]:
    """The replicas' CPU over ``seconds``, with the watch events they received meanwhile, and
    the API server's and etcd's CPU in the same window and their RSS."""
    kinds0 = [await r.metric_by(WATCH_EVENTS, "kind") for r in replicas]
    plane = _control_plane()
    before = {name: _cpu(p) for name, p in plane.items()}
    cpu0 = [_cpu(r.process) for r in replicas]
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    span = time.monotonic() - t0
    idle_cpu = [_cpu(r.process) - cpu0[k] for k, r in enumerate(replicas)]
    # Which watches the events came from says who was still at work (which controller).
    by_kinds = [{kind: n - before_k.get(kind, 0.0) for kind, n in (await r.metric_by(WATCH_EVENTS, "kind")).items()}
                for r, before_k in zip(replicas, kinds0, strict=True)]
    changes = [sum(by_kind.values()) for by_kind in by_kinds]
    rows = []
    for k, by_kind in enumerate(by_kinds):
        per_event = (f"; {idle_cpu[k] / changes[k] * 1e3:.2f} ms of CPU a watch event" if changes[k] >= 10 else "")
        rows.append((f"replica {k}: CPU while idle ({seconds:g} s{what}, {changes[k]:.0f} watch events meanwhile)",
                     f"{idle_cpu[k] / span * 100:.2f} % of a core{per_event}"))
        if any(by_kind.values()):
            rows.append((f"replica {k}: those watch events by kind", ", ".join(
                f"{kind} {n:.0f}" for kind, n in sorted(by_kind.items(), key=lambda kv: -kv[1]) if n)))
    for name, proc in plane.items():
        rows.append((f"{name}: CPU in the same window / RSS",
                     f"{(_cpu(proc) - before[name]) / span * 100:.1f} % of a core / "
                     f"{proc.memory_info().rss / 1e6:.0f} MB"))
    return rows


@contextmanager
def _paused(processes: Iterable[psutil.Process]) -> Iterator[None]:
    """The processes stopped (SIGSTOP) for the block, continued (SIGCONT) after it, whatever happens."""
    stopped: list[psutil.Process] = []
    try:
        for proc in processes:
            proc.suspend()
            stopped.append(proc)
        yield
    finally:
        for proc in stopped:
            with suppress(psutil.Error):
                proc.resume()


async def _watch_events(replicas: list[Replica]) -> list[float]:
    """The watch events each replica received so far."""
    return [(await r.metrics()).get(WATCH_EVENTS, 0.0) for r in replicas]


async def _quiet(replicas: list[Replica], quiet: float, timeout: float) -> float | None:
    """Seconds until no replica received a watch event for ``quiet`` seconds; None after ``timeout``."""
    t0 = time.monotonic()
    last, changed = await _watch_events(replicas), t0
    while time.monotonic() - changed < quiet:
        if time.monotonic() - t0 > timeout:
            return None
        await asyncio.sleep(1.0)
        now = await _watch_events(replicas)
        if now != last:
            last, changed = now, time.monotonic()
    return time.monotonic() - t0


async def _changes(api: kr8s.asyncio.Api, admin: Client, args: argparse.Namespace, replicas: list[Replica],
                   namespace: str, rows: list[tuple[str, str]]) -> None:
    """Phase 4: status changes seen by the other replica, drift repaired."""
    changes = min(args.changes, args.at_once[0])
    seen: list[float] = []
    for i in range(changes):
        code, body = await replicas[0].call("POST", f"/sessions/bench/agents/c{i}/suspend")
        if code != 200:
            raise SystemExit(f"suspend answered {code}: {body}")

        async def shown(agent_id: str = f"c{i}") -> bool:
            code, body = await replicas[1].call("GET", f"/sessions/bench/agents/{agent_id}")
            return code == 200 and body["status"] in ("stopping", "suspended", "stopped")
        took = await _until(shown, 20)
        seen.append(took if took is not None else float("inf"))
    rows.append(("status change (a suspend through replica 0) seen by replica 1, p50 / p95", _s(seen)))
    repaired: list[float] = []
    label = "app.kubernetes.io/name"
    for i in range(changes):
        agent_id = f"c{args.at_once[0] - 1 - i}"
        path = f"/api/v1/namespaces/{namespace}/services/{naming.object_names(agent_id)['service']}"
        base, _, rest = path.lstrip("/").partition("/")
        async with api.call_api("PATCH", version="", base=f"/{base}", url=rest,
                                content=json.dumps({"metadata": {"labels": {label: "changed-out-of-band"}}}),
                                params={"fieldManager": "drift-bench"},
                                headers={"Content-Type": "application/merge-patch+json"}) as resp:
            if resp.status_code >= 400:
                raise SystemExit(f"the out-of-band change failed: {resp.status_code} {resp.text}")

        async def back(path: str = path) -> bool:
            obj = await admin.get(path)
            return obj is not None and (obj["metadata"].get("labels") or {}).get(label) == "agentapi"
        took = await _until(back, 20)
        repaired.append(took if took is not None else float("inf"))
    rows.append(("drift repaired (a Service's label changed out of band), p50 / p95", _s(repaired)))


async def _list_floor(client: Client, namespace: str) -> float:
    """Seconds the smallest client takes to list every agent's objects of the five kinds a
    replica lists when it starts (at once, pages of 500 as a replica's, over aiohttp as a
    replica's, each parsed, nothing kept): the part of a start no design of the proxy can
    skip, on the cluster as it is then."""
    async def one(kind: Kind) -> None:
        params = {"labelSelector": naming.MANAGED_SELECTOR, "limit": str(LIST_PAGE)}
        while True:
            page = await client.request("GET", kind.collection(namespace), params=params)
            more = (page.get("metadata") or {}).get("continue")
            if not more:
                return
            params = {**params, "continue": more}
    t0 = time.monotonic()
    await asyncio.gather(*(one(kind) for kind in KINDS))
    return time.monotonic() - t0


async def _restart(admin: Client, replicas: list[Replica], n: int, rows: list[tuple[str, str]]) -> None:
    """Phase 5: a replica killed and started again, against the floor of its lists; on the test
    cluster once more with its controllers paused (the lists of a cluster at rest)."""
    rows += await _restart_once(admin, replicas, n, "")
    still = _control_plane(CONTROLLERS)
    if still:
        with _paused(still.values()):
            rows += await _restart_once(admin, replicas, n, ", the cluster's controllers paused")
    rows.append(("agents there afterwards (replica 0's list)", str(await replicas[0].count())))


async def _restart_once(admin: Client, replicas: list[Replica], n: int, what: str) -> list[tuple[str, str]]:
    """Replica 1 killed (SIGKILL) and started again, the lists alone measured just before."""
    floors = [await _list_floor(admin, replicas[1].namespace) for _ in range(3)]
    replica = replicas[1]
    replica.kill()
    assert replica.proc is not None
    await replica.proc.wait()
    t0 = time.monotonic()
    await replica.start()
    readyz = await _until(replica.ready, 120)
    ready_at = time.monotonic() - t0

    async def lists_all() -> bool:
        return await replica.count() == n
    listed = await _until(lists_all, 120)
    metrics = await replica.metrics()
    rss = replica.process.memory_info().rss
    floor = statistics.median(floors)
    return [(f"the five kinds' lists alone by the smallest client, just before (median of 3{what})",
             f"{floor:.1f} s ({', '.join(f'{f:.1f}' for f in floors)})"),
            (f"replica 1 killed and started again{what}: /readyz 200",
             f"{ready_at:.1f} s, {ready_at / floor:.2f}x the lists alone" if readyz is not None
             else "not within 120 s"),
            (f"  ... and lists all {n}", f"{time.monotonic() - t0:.1f} s" if listed is not None else "no"),
            ("  its RSS then (no create has passed through it)", f"{rss / 1e6:.0f} MB"),
            ("  lists / all API requests it made until then",
             f"{metrics.get('agentproxy_k8s_watch_lists_total', 0):.0f} / "
             f"{metrics.get('agentproxy_k8s_api_requests_total', 0):.0f}"),
            ("  repairs / prunes / claims removed while it started",
             f"{metrics.get('agentproxy_k8s_drift_repairs_total', 0):.0f} / "
             f"{metrics.get('agentproxy_k8s_pruned_total', 0):.0f} / "
             f"{metrics.get('agentproxy_k8s_abandoned_claims_total', 0):.0f}")]


async def run(args: argparse.Namespace, rows: list[tuple[str, str]], workdir: Path) -> None:
    api = await kr8s.asyncio.api()
    admin = Client(api)
    namespaces: list[str] = []
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    replicas: list[Replica] = []
    try:
        ns = await _namespace(admin)
        namespaces.append(ns)
        replicas = [Replica(ns, workdir, http, tuple(args.set)) for _ in range(2)]
        for replica in replicas:
            await replica.start()
        for replica in replicas:
            if await _until(replica.ready, 120) is None:
                raise SystemExit(f"a replica was not ready within 120 s; see {replica.log}")
        empty_rss = [r.process.memory_info().rss for r in replicas]
        n = await _floor_and_creates(api, admin, args, replicas, rows)
        await _reads(args, replicas, n, empty_rss, rows, workdir)
        await _changes(api, admin, args, replicas, ns, rows)
        await _restart(admin, replicas, n, rows)
    finally:
        for replica in replicas:
            await replica.stop()
        await http.close()
        if namespaces:
            t0 = time.monotonic()
            await _drop_namespaces(admin, namespaces, wait=args.cleanup_timeout)
            rows.append(("cleanup: the agents' namespace deleted", f"{time.monotonic() - t0:.0f} s"))
        await admin.close()


def _concurrencies(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive numbers, e.g. 50,100,200")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=10_000, help="agents (default 10000; at least 4)")
    parser.add_argument("--at-once", type=_concurrencies, default=[200, 2000],
                        help="sizes of the creates at once measured against the floor, each with a floor of "
                             "its own (default 200,2000); the other agents are created as many at once as the first")
    parser.add_argument("--floor-concurrency", type=_concurrencies, default=[50, 100, 200, 400],
                        help="concurrencies the floor tries (default 50,100,200,400)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting of both replicas (repeatable), e.g. k8s_mode.api.max_in_flight=16")
    parser.add_argument("--requests", type=int, default=30, help="requests per measured list (default 30)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured (default 10)")
    parser.add_argument("--settle", type=float, default=300.0,
                        help="seconds to wait at most for the watches to go quiet before idle CPU (default 300)")
    parser.add_argument("--changes", type=int, default=20, help="status changes and drift repairs (default 20)")
    parser.add_argument("--ready-timeout", type=float, default=1800.0,
                        help="seconds to wait for every agent to be listed, and ready (default 1800)")
    parser.add_argument("--cleanup-timeout", type=float, default=1800.0,
                        help="seconds to wait for a namespace's deletion (default 1800)")
    args = parser.parse_args()
    if args.agents < sum(args.at_once) + 2:
        parser.error("--agents must be at least the sum of --at-once and 2 (a session of its own)")
    rows: list[tuple[str, str]] = [("machine", f"{os.cpu_count()} cores, load average at the start "
                                    "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="agentproxy-scale-") as tmp:
        try:
            asyncio.run(run(args, rows, Path(tmp)))
        finally:
            rows.append(("load average at the end / whole run", "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
                         + f" / {time.monotonic() - started:.0f} s"))
            width = max(len(r[0]) for r in rows)
            for name, value in rows:
                print(f"{name:<{width}}  {value}", flush=True)
    return 0


if __name__ == "__main__":
    from .cluster_check import require_cluster

    if not {"-h", "--help"} & set(sys.argv):
        require_cluster("bench-scale")
    sys.exit(main())
