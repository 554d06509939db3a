"""One shared list+watch cache per namespace.

A :class:`Reflector` per kind lists the objects that carry agentproxy's
``managed-by`` label, then watches from the list's resourceVersion. It relists
when the server answers 410 Gone (kr8s's own watch would retry the same stale
resourceVersion), reconnects with jittered exponential backoff (cut short by
:meth:`NamespaceCache.wake` when the API server answers again), and restarts a
watch that stays silent too long (bookmarks keep a healthy one talking). Lists
are read in pages of :data:`LIST_PAGE`. A reflector is healthy from a successful
list, or a watch the server accepted, until its next failure. Readers get objects
from memory: listing agents costs no API call. Stored objects keep no ``managedFields`` (nothing reads them),
pods only the part of their spec that is read (:data:`SPEC_READ`); they share their equal parts
(:mod:`.sharing`) and are read-only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ... import naming
from ..base import BackendError, Unavailable
from .client import Client, Gone
from .kinds import CONFIGMAP, EVENT, EVENT_SOURCES, KINDS, POD, STATEFULSET, Kind
from .sharing import share

__all__ = ["Listener", "NamespaceCache", "Reflector", "version_reached"]

log = logging.getLogger(__name__)


NOTIFY_BATCH = 256
"""Changes of a list told to the listener between two yields to the event loop."""

LIST_PAGE = 500
"""Objects per page of a list (client-go's default)."""

Listener = Callable[[Kind, str, dict[str, Any]], Awaitable[None] | None]
"""Called with (kind, event type ADDED/MODIFIED/DELETED, object) after the store changed."""


class Reflector:
    """Keeps ``store`` equal to the objects of one kind in one namespace that ``selector``
    selects (by default those with agentproxy's ``managed-by`` label), indexed by the agent
    ``agent_of`` tells (by default the agent-id label)."""

    def __init__(self, client: Client, kind: Kind, namespace: str, listener: Listener, *,
                 selector: Mapping[str, str] | None = None,
                 agent_of: Callable[[dict[str, Any]], str | None] | None = None,
                 watch_timeout: float = 240.0, silence_timeout: float = 90.0,
                 backoff_max: float = 30.0, page_size: int = LIST_PAGE) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.listener = listener
        self.selector = dict(selector or {"labelSelector": naming.MANAGED_SELECTOR})
        self.agent_of = agent_of or _agent_id
        self.store: dict[str, dict[str, Any]] = {}
        """The objects by name: read-only, since they share their equal parts (see :mod:`.sharing`)."""
        self._like: dict[str, Any] | None = None
        """The object last stored: a new one shares what equals it."""
        self.by_agent: dict[str, tuple[str, ...]] = {}
        """Names of the stored objects by the agent id of their label. Tuples: an agent has one
        object of most kinds (a set each took 216 bytes, 15 MB with 10,000 agents' five kinds)."""
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        self.events = 0
        """Watch events received (bookmarks aside): how busy the kind is, for ``/metrics``."""
        self.watch_timeout = watch_timeout
        self.silence_timeout = silence_timeout
        self.backoff_max = backoff_max
        self.page_size = page_size
        self.healthy = False
        self.last_error: Exception | None = None
        self._wake = asyncio.Event()
        self._seen: dict[str, list[tuple[str, asyncio.Future[None]]]] = defaultdict(list)
        """Who waits for which object name to be stored at (or past) which resourceVersion."""

    def wake(self) -> None:
        """Cut a backoff short: try again now (the API server answers again). A refusal (RBAC,
        say) is not retried any sooner: the server's answer would be the same."""
        if self.last_error is None or _transient(self.last_error):
            self._wake.set()

    async def run(self) -> None:
        """List, then watch, forever (until cancelled)."""
        failures = 0
        while True:
            try:
                # After a broken connection, resume watching from the last
                # resourceVersion seen; list again only when there is none
                # or the server says it is too old.
                if not self.resource_version:
                    await self._list()
                while True:
                    await self._watch()
                    failures = 0
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("%s watch expired (410 Gone); relisting", self.kind.name)
                self.resource_version = ""
            except Exception as exc:  # any failure: back off, then resume
                self.healthy = False
                self.last_error = exc
                health = getattr(self.client, "health", None)
                if health is not None and _transient(exc):  # the server's next answer wakes us
                    health.failed(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
                failures += 1
                delay = min(self.backoff_max, 0.5 * 2 ** min(failures, 8)) * random.uniform(0.5, 1.0)
                log.warning("%s list/watch failed (%s); retrying in %.1f s", self.kind.name,
                            getattr(exc, "message", None) or exc, delay)
                await self._backoff(delay)

    async def _backoff(self, delay: float) -> None:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            pass

    async def _list(self) -> None:
        # In pages, as client-go's informers list: one answer of 10,000 objects took longer than
        # a request may take, while every page is one bounded request. The pages after the first
        # are served from the first one's snapshot, so together they are one consistent list.
        old = self.store
        fresh: dict[str, dict[str, Any]] = {}
        like = self._like
        params = {**self.selector, "limit": str(self.page_size)}
        while True:
            body = await self.client.request("GET", self.kind.collection(self.namespace), params=params,
                                             verb="list", resource=self.kind.plural)
            for item in body.get("items") or ():
                # Stored once, what equals the object as it was, else the one listed before it;
                # page by page, so that no more than a page is ever held twice.
                name = item["metadata"]["name"]
                fresh[name] = like = share(_with_kind(item, self.kind), old.get(name, like))
            more = (body.get("metadata") or {}).get("continue")
            if not more:
                break
            params = {**self.selector, "limit": str(self.page_size), "continue": more}
        self.relists += 1
        self._like = like
        self.store = fresh
        self.by_agent = {}
        for name, obj in fresh.items():
            self._index(name, obj)
        self.resource_version = body["metadata"]["resourceVersion"]
        for waited in list(self._seen):
            self._tell_seen(waited)
        # Tell listeners what changed while we were not watching, letting the event loop serve
        # between batches (a list of thousands is seconds of work for the listeners).
        changes = [("DELETED", obj) for name, obj in old.items() if name not in fresh]
        for name, obj in fresh.items():
            previous = old.get(name)
            if previous is None:
                changes.append(("ADDED", obj))
            elif previous["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                changes.append(("MODIFIED", obj))
        for n, (event_type, obj) in enumerate(changes):
            await self._notify(event_type, obj)
            if n % NOTIFY_BATCH == NOTIFY_BATCH - 1:
                await asyncio.sleep(0)
        # Listed once every listener heard of it (a start goes on from a whole view).
        self.healthy = True
        self.synced.set()

    async def _watch(self) -> None:
        params = {
            "watch": "1", **self.selector, "allowWatchBookmarks": "true",
            "resourceVersion": self.resource_version,
            # Jitter so that the watches of many proxies do not all restart at once.
            "timeoutSeconds": str(int(self.watch_timeout * random.uniform(0.8, 1.0))),
        }
        async with self.client.stream(self.kind.collection(self.namespace), params, self.silence_timeout) as lines:
            # The server accepted the watch: the cache is current again.
            self.healthy = True
            self.last_error = None
            async for line in lines:
                if line.strip():
                    await self._handle(json.loads(line))

    async def _handle(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type") or "", event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone(obj.get("message", "resource version too old"))
            raise RuntimeError(f"watch error: {obj.get('message')}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self.resource_version = rv
        if kind == "BOOKMARK":
            return
        self.events += 1
        obj = _with_kind(obj, self.kind)
        name = obj["metadata"]["name"]
        previous = self.store.pop(name, None)
        if previous is not None:
            self._unindex(name, previous)
        if kind != "DELETED":
            # What did not change is stored once, with the object's last version (or another of its kind).
            obj = self._like = share(obj, previous if previous is not None else self._like)
            self.store[name] = obj
            self._index(name, obj)
        if name in self._seen:
            self._tell_seen(name)
        await self._notify(kind, obj)

    async def wait_seen(self, name: str, resource_version: str, timeout: float) -> bool:
        """Wait until the store holds ``name`` at ``resource_version`` or a later one (or no
        longer holds it): a writer that waits for its own write reads it back from the store.
        False after ``timeout`` seconds, or at once while the watch is down."""
        if self._reached(name, resource_version):
            return True
        if not self.healthy:
            return False
        seen = asyncio.get_running_loop().create_future()
        waiters = self._seen[name]
        waiters.append((resource_version, seen))
        try:
            await asyncio.wait_for(asyncio.shield(seen), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiters.remove((resource_version, seen))
            if not waiters:
                self._seen.pop(name, None)

    def _reached(self, name: str, resource_version: str) -> bool:
        obj = self.store.get(name)
        if obj is None:
            return False
        return version_reached(obj["metadata"].get("resourceVersion") or "", resource_version)

    def _tell_seen(self, name: str) -> None:
        gone = name not in self.store
        for version, seen in self._seen.get(name, ()):
            if not seen.done() and (gone or self._reached(name, version)):
                seen.set_result(None)

    def _index(self, name: str, obj: dict[str, Any]) -> None:
        agent_id = self.agent_of(obj)
        if agent_id:
            names = self.by_agent.get(agent_id, ())
            if name not in names:
                self.by_agent[agent_id] = (*names, name)

    def _unindex(self, name: str, obj: dict[str, Any]) -> None:
        agent_id = self.agent_of(obj) or ""
        names = self.by_agent.get(agent_id)
        if names is not None and name in names:
            left = tuple(other for other in names if other != name)
            if left:
                self.by_agent[agent_id] = left
            else:
                del self.by_agent[agent_id]

    def of_agent(self, agent_id: str) -> list[dict[str, Any]]:
        """The stored objects labelled for ``agent_id``."""
        return [self.store[name] for name in self.by_agent.get(agent_id, ())]

    async def _notify(self, event_type: str, obj: dict[str, Any]) -> None:
        try:
            result = self.listener(self.kind, event_type, obj)
            if asyncio.iscoroutine(result):
                await result
        except Exception:  # a listener bug must not stop the watch
            log.exception("listener failed for %s %s", self.kind.name, obj["metadata"].get("name"))


def version_reached(stored: str, written: str) -> bool:
    """True when an object stored at resourceVersion ``stored`` shows the write that answered
    ``written``: the same version, or a later one. Kubernetes calls resourceVersions opaque;
    etcd's are increasing integers, compared as such; any other form only by equality."""
    if stored == written:
        return True
    return stored.isdigit() and written.isdigit() and int(stored) > int(written)


def _transient(exc: BaseException) -> bool:
    """A failure that may pass (no answer, a broken connection), not a refusal (RBAC, ...)."""
    return not isinstance(exc, BackendError) or isinstance(exc, Unavailable)


def _agent_id(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(naming.LABEL_AGENT_ID)


def event_agent(event: Mapping[str, Any]) -> str | None:
    """The agent an Event is about, by the name of the object it names (a StatefulSet
    ``agent-ID`` or a claim ``data-agent-ID-0``)."""
    involved = event.get("involvedObject") or {}
    name, kind = str(involved.get("name") or ""), involved.get("kind")
    if kind == STATEFULSET.name and name.startswith("agent-"):
        return name[len("agent-"):]
    if kind == "PersistentVolumeClaim" and name.startswith("data-agent-") and name.endswith("-0"):
        return name[len("data-agent-"):-len("-0")]
    return None


def events_key(kind: Kind) -> str:
    """The key of the reflector of ``kind``'s Events in :attr:`NamespaceCache.reflectors`."""
    return f"{EVENT.name}/{kind.name}"


SPEC_READ: dict[str, tuple[str, ...]] = {POD.name: ("nodeName",)}
"""Kinds agentproxy never applies (so never compares), and the only fields of their ``spec``
anything reads. The rest of a pod's spec repeats its StatefulSet's template (containers,
volumes, tolerations): 45 % of a stored pod, and a quarter of the time a list of pods takes to
store."""


def _with_kind(obj: dict[str, Any], kind: Kind) -> dict[str, Any]:
    # List items carry no kind; keep it so objects can be re-applied or compared.
    obj.setdefault("kind", kind.name)
    # Nothing reads who manages which field, and it is 40 % of an object: with thousands of
    # agents, most of the cache's memory.
    (obj.get("metadata") or {}).pop("managedFields", None)
    read = SPEC_READ.get(kind.name)
    spec = obj.get("spec")
    if read is not None and type(spec) is dict:
        obj["spec"] = {key: spec[key] for key in read if key in spec}
    return obj


class NamespaceCache:
    """The reflectors of every managed kind in one namespace, and an index by agent id.

    The Events of StatefulSets and claims are watched too, for the reasons they give; they
    are not needed to serve, so their watches do not count for readiness (a Role without
    Events only loses those reasons)."""

    def __init__(self, client: Client, namespace: str, listener: Listener, *, start_timeout: float = 30.0,
                 **reflector_options: Any) -> None:  # Reflector's timeouts, by name
        self.namespace = namespace
        self.start_timeout = start_timeout
        self.reflectors = {k.name: Reflector(client, k, namespace, listener, **reflector_options) for k in KINDS}
        self.required = list(self.reflectors.values())
        for source in EVENT_SOURCES:
            self.reflectors[events_key(source)] = Reflector(
                client, EVENT, namespace, listener, selector={"fieldSelector": f"involvedObject.kind={source.name}"},
                agent_of=event_agent, **reflector_options)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float | None = None) -> None:
        """Start every reflector and wait until each one readiness needs has listed once; on
        failure, raise what stopped the first reflector that could not list."""
        timeout = self.start_timeout if timeout is None else timeout
        self._tasks = [asyncio.create_task(r.run(), name=f"reflector-{r.kind.plural}")
                       for r in self.reflectors.values()]
        waits = [asyncio.create_task(r.synced.wait()) for r in self.required]
        done, pending = await asyncio.wait(waits, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            stuck = [r for r in self.required if not r.synced.is_set()]
            await self.close()
            for reflector in stuck:
                if isinstance(reflector.last_error, BackendError):
                    raise reflector.last_error
            raise Unavailable(f"could not list {', '.join(r.kind.plural for r in stuck)} within {timeout:.0f} s")

    def wake(self) -> None:
        """Every reflector waiting to retry tries again now."""
        for reflector in self.reflectors.values():
            reflector.wake()

    def restart_watches(self) -> None:
        """End every watch and start it again from its last resourceVersion."""
        for task in self._tasks:
            task.cancel()
        self._tasks = [asyncio.create_task(r.run(), name=f"reflector-{r.kind.plural}")
                       for r in self.reflectors.values()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @property
    def healthy(self) -> bool:
        """True while every reflector readiness needs has listed or watches."""
        return all(r.healthy for r in self.required)

    def problem(self) -> str | None:
        """Why the cache is not current, None while it is."""
        for reflector in self.required:
            if not reflector.healthy:
                error = reflector.last_error
                detail = (getattr(error, "message", None) or str(error)) if error else "not listed yet"
                return f"the watch of {reflector.kind.plural} is not established: {detail}"
        return None

    def get(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The stored object of ``kind`` named ``name``."""
        return self.reflectors[kind.name].store.get(name)

    async def wait_seen(self, kind: Kind, name: str, resource_version: str, timeout: float) -> bool:
        """Wait until the store shows the write of ``name`` that answered ``resource_version``
        (see :meth:`Reflector.wait_seen`); True at once for a kind this cache does not hold."""
        reflector = self.reflectors.get(kind.name)
        return reflector is None or await reflector.wait_seen(name, resource_version, timeout)

    def objects(self, kind: Kind) -> list[dict[str, Any]]:
        """Every stored object of ``kind``."""
        return list(self.reflectors[kind.name].store.values())

    def of_agent(self, kind: Kind, agent_id: str) -> list[dict[str, Any]]:
        """The stored objects of ``kind`` labelled for ``agent_id`` (from an index: no scan)."""
        return self.reflectors[kind.name].of_agent(agent_id)

    def events_of(self, agent_id: str) -> list[dict[str, Any]]:
        """The Events about the agent's StatefulSet and claim."""
        return [e for source in EVENT_SOURCES for e in self.reflectors[events_key(source)].of_agent(agent_id)]

    def agent_ids(self) -> set[str]:
        """Ids of every agent with a claim (ConfigMap) or a StatefulSet."""
        return set(self.reflectors[CONFIGMAP.name].by_agent) | set(self.reflectors[STATEFULSET.name].by_agent)
