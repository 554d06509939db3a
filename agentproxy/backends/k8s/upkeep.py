"""What the k8s backend reports and checks beside its agents: its counters for
``/metrics``, and whether its namespace exists (a list in a namespace that does not
exist answers empty; only a create finds out)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..base import BackendError, MetricSample, Unavailable
from .client import Client, NamespaceMissing
from .kinds import CONFIGMAP, KINDS
from .plan import APPLIED

log = logging.getLogger(__name__)


def samples(backend: Any) -> list[MetricSample]:
    """Drift repairs by kind, rollbacks, abandoned claims, relists, watch events, and the API
    server's answers of a k8s backend."""
    reconciler, cache, health, client = backend.reconciler, backend.cache, backend.health, backend.client
    repairs = [MetricSample("k8s_drift_repairs_total", "Objects applied again because another manager changed "
                            "or removed a field agentproxy owns, or deleted the object, by kind.", "counter",
                            reconciler.repairs.get(k.name, 0), (("kind", k.name),)) for k in APPLIED]

    # Every reflector, the Events' too (labelled "Event/StatefulSet", say): a cluster at work
    # on thousands of agents reports on them there, and each report is a watch event to handle.
    watched = list(cache.reflectors) if cache else [k.name for k in KINDS]

    def by_kind(name: str, text: str, count: str) -> list[MetricSample]:
        """A counter of each reflector (its attribute ``count``)."""
        return [MetricSample(name, text, "counter", getattr(cache.reflectors[key], count) if cache else 0,
                             (("kind", key),)) for key in watched]
    relists = by_kind("k8s_watch_lists_total", "Lists of the watch cache (the first and every relist), by kind.",
                      "relists")
    events = by_kind("k8s_watch_events_total", "Changes received by the watches (bookmarks aside), by kind.", "events")
    silence = health.silence()
    return [*repairs, *relists, *events,
            MetricSample("k8s_rollbacks_total", "Creates cut off half-way whose objects were removed again.",
                         "counter", backend.rollbacks.done),
            MetricSample("k8s_abandoned_claims_total", "Claims removed because their create never finished.",
                         "counter", reconciler.abandoned),
            MetricSample("k8s_pruned_total", "Labelled objects removed because the templates no longer render "
                         "them.", "counter", reconciler.pruned),
            MetricSample("k8s_api_server_answering", "1 while the Kubernetes API server answers (see "
                         "k8s_mode.api.unready_after), else 0.", "gauge", 1.0 if health.answering() else 0.0),
            MetricSample("k8s_api_server_silence_seconds", "Seconds since the API server last answered.",
                         "gauge", silence if silence is not None else -1.0),
            MetricSample("k8s_api_requests_total", "Calls to the Kubernetes API server.", "counter",
                         client.calls if client else 0)]


class NamespaceCheck:
    """Whether the namespace exists, found by a dry-run create there (reading a namespace
    would need a cluster-wide permission the proxy's Role does not grant)."""

    def __init__(self, client: Client, namespace: str, field_manager: str) -> None:
        self.client, self.namespace, self.field_manager = client, namespace, field_manager
        self.problem: str | None = None
        """Set while the namespace is found missing."""

    def missing(self, error: NamespaceMissing) -> None:
        """A call found the namespace missing."""
        if self.problem is None:
            log.error("%s", error.message)
        self.problem = error.message

    async def check(self) -> None:
        """Find out now."""
        probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "agentproxy-check-"}}
        try:
            await self.client.request("POST", CONFIGMAP.collection(self.namespace), body=probe,
                                      params={"dryRun": "All", "fieldManager": self.field_manager},
                                      verb="create", resource="configmaps")
        except NamespaceMissing as exc:
            self.missing(exc)
            return
        except Unavailable:
            return  # a silent server says nothing about the namespace
        except BackendError:
            pass  # another refusal (RBAC, admission): the namespace is there
        if self.problem is not None:
            log.info("the namespace %r exists now", self.namespace)
        self.problem = None

    async def run(self, interval: float = 30.0) -> None:
        """Check again now and then, more often while it is missing (it may be deleted, or
        created at last)."""
        while True:
            await asyncio.sleep(interval if self.problem is None else min(interval, 5.0))
            await self.check()
