"""Prometheus metrics of the API: requests, latency, agents by status, proxied bytes, and the
suspends and resumes of agents (by cause) with the time from a resume to ready.

Counting a request is on the path of every proxied request, so it is a few additions to
plain numbers (no lock: the event loop runs one callback at a time); the Prometheus
families are built from them only when ``/metrics`` is scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from ..backends.base import AgentStatus, Backend, LifecycleEvent
from ..backends.suspension import RESUME_CAUSES, SUSPEND_CAUSES
from .backend_metrics import BackendCollector
from .errors import Handler

UNMATCHED = "unmatched"
"""The route label of requests no route matched (keeps the label set small)."""

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RESUME_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_BOUNDS = (*map(floatToGoString, LATENCY_BUCKETS), "+Inf")


class Tally:
    """A number that only grows (a Prometheus counter's value), kept as a plain float."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (at least 0)."""
        self.value += amount


class _Series:
    """Requests of one method, route and status: how many, their total time and a histogram."""

    __slots__ = ("count", "total", "buckets")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf


class _Collector:
    """Builds the request and byte families from the plain numbers at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return list(self.collect())

    def collect(self) -> Iterator[Metric]:
        metrics = self.metrics
        labels = ["method", "route", "status"]
        requests = CounterMetricFamily("agentproxy_http_requests",
                                       "HTTP requests answered, by method, route template and status.", labels=labels)
        latency = HistogramMetricFamily(
            "agentproxy_http_request_duration_seconds",
            "Time to answer an HTTP request (for streams: until the stream ended), by method, route "
            "template and status.", labels=labels)
        for (method, route, status), series in list(metrics._series.items()):
            values = [method, route, str(status)]
            requests.add_metric(values, series.count)
            cumulative, buckets = 0, []
            for bound, count in zip(_BOUNDS, series.buckets, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric(values, buckets, series.total)
        proxied = CounterMetricFamily(
            "agentproxy_proxy_bytes", "Body bytes passed through the agent API proxy: direction=in from "
            "clients to agents, direction=out from agents to clients.", labels=["direction"])
        proxied.add_metric(["in"], metrics.proxy_bytes_in.value)
        proxied.add_metric(["out"], metrics.proxy_bytes_out.value)
        yield from (requests, latency, proxied)


class Metrics:
    """The metrics of one application, in a registry of its own."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.registry = CollectorRegistry(auto_describe=True)
        self.agents = Gauge("agentproxy_agents", "Agents by status, as the backend lists them at scrape time.",
                            ["status"], registry=self.registry)
        self.proxy_bytes_in = Tally()
        """Body bytes from clients to agents."""
        self.proxy_bytes_out = Tally()
        """Body bytes from agents to clients."""
        self._series: dict[tuple[str, str, int], _Series] = {}
        self.registry.register(_Collector(self))
        self.registry.register(BackendCollector(backend))
        # Suspends and resumes are rare: prometheus_client's own families are cheap enough.
        self.suspends = Counter(
            "agentproxy_agent_suspends", "Agents this proxy suspended, by cause: api (a request to the API) or "
            "idle (idle culling).", ["cause"], registry=self.registry)
        self.resumes = Counter(
            "agentproxy_agent_resumes", "Suspended agents this proxy resumed, by cause: api (a resume or a "
            "create) or request (a proxied request).", ["cause"], registry=self.registry)
        self.resume_seconds = Histogram(
            "agentproxy_agent_resume_seconds", "From a resume to the agent being ready, by cause.", ["cause"],
            buckets=RESUME_BUCKETS, registry=self.registry)
        self.expired = Counter("agentproxy_agents_expired", "Agents deleted for being older than agents.max_age.",
                               registry=self.registry)
        for cause in SUSPEND_CAUSES:
            self.suspends.labels(cause)
        for cause in RESUME_CAUSES:
            self.resumes.labels(cause)
            self.resume_seconds.labels(cause)
        backend.lifecycle_listeners.append(self.lifecycle)

    def lifecycle(self, event: LifecycleEvent) -> None:
        """Count a suspend or resume of the backend, and time a resume until ready."""
        if event.kind == "suspended":
            self.suspends.labels(event.cause).inc()
        elif event.kind == "resumed":
            self.resumes.labels(event.cause).inc()
        elif event.kind == "ready" and event.seconds is not None:
            self.resume_seconds.labels(event.cause).observe(event.seconds)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.count += 1
        series.total += seconds
        series.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def middleware(self) -> Any:
        """The aiohttp middleware that counts and times every request."""
        observe = self.observe
        clock = time.perf_counter

        @web.middleware
        async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            started = clock()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except BaseException:
                status = 499 if request.transport is None else 500  # 499: the client went away
                raise
            finally:
                resource = request.match_info.route.resource
                route = resource.canonical if resource is not None else UNMATCHED
                observe(request.method, route, status, clock() - started)

        return metrics_middleware

    async def handle(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the text exposition format."""
        counts = dict.fromkeys((s.value for s in AgentStatus), 0)
        for state in await self.backend.list():
            counts[state.status.value] = counts.get(state.status.value, 0) + 1
        for status, count in counts.items():
            self.agents.labels(status).set(count)
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})
