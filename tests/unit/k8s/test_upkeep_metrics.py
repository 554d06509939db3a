"""The k8s backend's counters for ``/metrics``: every watch of its cache is counted, the
watches of Events included (a cluster at work on thousands of agents reports on them there)."""

from types import SimpleNamespace

from agentproxy.backends.k8s import upkeep
from agentproxy.backends.k8s.cache import NamespaceCache
from agentproxy.backends.k8s.health import ApiHealth
from agentproxy.backends.k8s.kinds import KINDS


def test_every_watch_is_counted_by_kind_the_events_ones_too():
    cache = NamespaceCache(client=None, namespace="agents", listener=lambda *_: None)  # type: ignore[arg-type]
    for n, reflector in enumerate(cache.reflectors.values(), start=1):
        reflector.events, reflector.relists = 10 * n, n
    backend = SimpleNamespace(reconciler=SimpleNamespace(repairs={}, abandoned=0, pruned=0), cache=cache,
                              health=ApiHealth(unready_after=30.0), client=SimpleNamespace(calls=7),
                              rollbacks=SimpleNamespace(done=0))
    found = {(s.name, dict(s.labels)["kind"]): s.value for s in upkeep.samples(backend) if s.labels}
    events = {kind: value for (name, kind), value in found.items() if name == "k8s_watch_events_total"}
    assert events == {key: 10.0 * n for n, key in enumerate(cache.reflectors, start=1)}
    assert {"Event/StatefulSet", "Event/PersistentVolumeClaim"} <= events.keys()
    assert {k.name for k in KINDS} <= events.keys()
    lists = {kind: value for (name, kind), value in found.items() if name == "k8s_watch_lists_total"}
    assert lists == {key: float(n) for n, key in enumerate(cache.reflectors, start=1)}
