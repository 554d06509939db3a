"""The backend's own counters and gauges (:meth:`~agentproxy.backends.base.Backend.metrics`)
as Prometheus metrics, read at scrape time."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..backends.base import Backend, MetricSample

PREFIX = "agentproxy_"


class BackendCollector(Collector):
    """Yields what ``backend.metrics()`` reports, one family per name."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def collect(self) -> Iterator[Metric]:
        families: dict[str, list[MetricSample]] = defaultdict(list)
        for sample in self.backend.metrics():
            families[sample.name].append(sample)
        for name, samples in families.items():
            first = samples[0]
            labels = [key for key, _ in first.labels]
            family: CounterMetricFamily | GaugeMetricFamily
            if first.type == "counter":
                family = CounterMetricFamily(PREFIX + name.removesuffix("_total"), first.help, labels=labels)
            else:
                family = GaugeMetricFamily(PREFIX + name, first.help, labels=labels)
            for sample in samples:
                family.add_metric([value for _, value in sample.labels], sample.value)
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # the families depend on the backend; nothing to check at registration
