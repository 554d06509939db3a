"""The k8s backend: agents as StatefulSets, applied server-side, watched through one cache.

The proxy keeps no state of its own. The ConfigMap is an agent's claim: it is
created (not applied) first, so that of two creates of one id with different
specs exactly one wins, across any number of proxy replicas; it and the
StatefulSet carry the agent's spec as an annotation, which is all a restarted
proxy needs to rebuild everything.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any, AsyncIterator

import aiohttp

from ... import naming
from ...render import RenderError, render_agent
from ...settings import AGENT_PORT, Settings
from ...spec import AgentSpec
from ..base import AgentState, AgentStatus, Backend, BackendError, Conflict, NotFound, Rejected, StatusEvent
from ..conversation import FIRST_MESSAGE_PENDING, FirstMessageTracker
from ..events import EventHub
from .cache import CONFIGMAP, POD, PVC, SERVICE, STATEFULSET, Kind, NamespaceCache
from .client import Client
from .reconcile import Reconciler, with_owner
from .status import derive_status

log = logging.getLogger(__name__)

SPEC_ANNOTATION = "agentproxy.io/spec"
SPEC_HASH_ANNOTATION = "agentproxy.io/spec-hash"


class K8sBackend(Backend):
    """Agents in one namespace of one cluster."""

    mode = "k8s"

    def __init__(self, settings: Settings, client: Client | None = None, **cache_options: float) -> None:
        self.settings = settings
        self.k8s = settings.k8s_mode
        self.namespace = self.k8s.namespace
        self.client = client
        self.cache: NamespaceCache | None = None
        self.hub = EventHub()
        self._locks: dict[str, asyncio.Lock] = {}
        self._last: dict[str, AgentState] = {}
        self._specs: dict[str, AgentSpec] = {}
        self._cache_options = cache_options
        self.reconciler = Reconciler(self)
        self._http: aiohttp.ClientSession | None = None
        self.first_messages: FirstMessageTracker | None = None
        """Follows ready agents until their first message is delivered (see :mod:`..conversation`)."""

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        if self.client is None:
            self.client = await Client.connect(self.k8s.kubeconfig, self.k8s.context)
        # One pooled client for the agents' event streams; no limit, each stream holds a connection.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)
        self.first_messages = FirstMessageTracker(self._http, self.settings.agents.first_message_timeout,
                                                  self._publish)
        self.cache = NamespaceCache(self.client, self.namespace, self._on_change, **self._cache_options)
        await self.cache.start()
        for agent_id in self.cache.agent_ids():
            self.reconciler.schedule(agent_id)

    async def close(self) -> None:
        await self.reconciler.close()
        if self.cache is not None:
            await self.cache.close()
        if self.first_messages is not None:
            await self.first_messages.close()
        if self._http is not None:
            await self._http.close()

    async def healthy(self) -> bool:
        return self.cache is not None and self.cache.healthy

    # --- reading from the cache -------------------------------------------------

    def spec_of(self, agent_id: str) -> AgentSpec | None:
        """The agent's spec as stored in the cluster (claim first, then StatefulSet)."""
        assert self.cache is not None
        for kind, name in ((CONFIGMAP, naming.configmap_name(agent_id)), (STATEFULSET, naming.statefulset_name(agent_id))):
            obj = self.cache.get(kind, name)
            text = ((obj or {}).get("metadata", {}).get("annotations") or {}).get(SPEC_ANNOTATION)
            if text:
                spec = self._parse_spec(text)
                if spec is not None:
                    return spec
                log.warning("%s %s has an unreadable spec annotation", kind.name, name)
        return None

    def _parse_spec(self, text: str) -> AgentSpec | None:
        # Listing a thousand agents must not parse a thousand JSON documents.
        cached = self._specs.get(text)
        if cached is None:
            try:
                cached = AgentSpec.from_json(text)
            except ValueError:
                return None
            if len(self._specs) > 10_000:
                self._specs.clear()
            self._specs[text] = cached
        return cached

    def state_of(self, agent_id: str) -> AgentState | None:
        """The agent's state from cached objects, or None when it does not exist."""
        assert self.cache is not None
        spec = self.spec_of(agent_id)
        if spec is None:
            return None
        names = naming.object_names(agent_id)
        sts = self.cache.get(STATEFULSET, names["statefulset"])
        pod = self.cache.get(POD, names["pod"])
        pvc = self.cache.get(PVC, names["pvc"])
        claim = self.cache.get(CONFIGMAP, names["configmap"])
        derived = derive_status(sts, pod, pvc)
        if sts is None and claim is not None and derived.status is AgentStatus.STOPPED:
            derived = type(derived)(AgentStatus.PENDING, "NotApplied", "the StatefulSet has not been applied yet")
        pod_ip = ((pod or {}).get("status") or {}).get("podIP")
        upstream = None
        if pod_ip and derived.status in (AgentStatus.READY, AgentStatus.STARTING):
            host = pod_ip if self.k8s.pod_address == "pod_ip" else \
                f"{names['pod']}.{names['service']}.{self.namespace}.svc"
            upstream = f"http://{host}:{AGENT_PORT}"
        first = claim or sts
        overdue = self.first_messages.overdue(agent_id) if self.first_messages else None
        if overdue and derived.status is AgentStatus.READY:
            derived = dataclasses.replace(derived, reason=FIRST_MESSAGE_PENDING, message=overdue)
        return AgentState(
            spec=spec, mode=self.mode, status=derived.status, reason=derived.reason, message=derived.message,
            created_at=_timestamp(first), upstream=upstream, restarts=derived.restarts,
            details={"namespace": self.namespace, **{k: v for k, v in names.items()},
                     "pod_ip": pod_ip, "node": ((pod or {}).get("spec") or {}).get("nodeName")},
        )

    async def get(self, session: str, agent_id: str) -> AgentState:
        state = self.state_of(agent_id) if self.cache else None
        if state is None or state.session != session:
            raise NotFound(f"agent {agent_id!r} does not exist in session {session!r}")
        return state

    async def list(self, session: str | None = None, status: AgentStatus | None = None) -> list[AgentState]:
        assert self.cache is not None
        states = [s for s in (self.state_of(a) for a in self.cache.agent_ids()) if s is not None]
        states = [s for s in states if (session is None or s.session == session) and (status is None or s.status == status)]
        return sorted(states, key=lambda s: (s.created_at, s.id))

    # --- writing ---------------------------------------------------------------

    def render(self, spec: AgentSpec) -> list[dict[str, Any]]:
        """The agent's manifests; a template problem is the request's problem (422)."""
        try:
            return render_agent(self.settings, spec)
        except RenderError as exc:
            raise Rejected(str(exc), field=exc.field) from None

    def creating(self, agent_id: str) -> bool:
        """True while a create of this agent is under way in this proxy."""
        lock = self._locks.get(agent_id)
        return lock is not None and lock.locked()

    async def create(self, spec: AgentSpec) -> AgentState:
        assert self.cache is not None and self.client is not None
        objects = self.render(spec)
        lock = self._locks.setdefault(spec.id, asyncio.Lock())
        async with lock:
            existing = self.spec_of(spec.id)
            if existing is not None:
                _check_same(existing, spec)
            # Data kept from an earlier agent of this id is never rolled back.
            had_claim = self.cache.get(PVC, naming.pvc_name(spec.id)) is not None
            self.reconciler.note_applied(spec.id)  # our own half-applied agent is not drift
            claimed = await self._claim(spec, objects[0]) if existing is None else False
            try:
                await self.apply_objects(objects)
                self.reconciler.note_applied(spec.id)
            except BackendError:
                if claimed:
                    await self._roll_back(spec.id, delete_claim=not had_claim)
                raise
        current = self.state_of(spec.id)
        if existing is not None and current is not None:
            return current  # an idempotent repeat reports the agent as it is
        # A new agent: its objects are applied, nothing has run yet.
        return AgentState(
            spec=spec, mode=self.mode, status=AgentStatus.PENDING,
            created_at=current.created_at if current else datetime.now(timezone.utc),
            reason="Applied", message="objects applied; waiting for the cluster",
            details={"namespace": self.namespace, **naming.object_names(spec.id)})

    async def _claim(self, spec: AgentSpec, configmap: dict[str, Any]) -> bool:
        """Create the ConfigMap; True when this call created it. An existing one
        with another spec means the id is taken."""
        assert self.client is not None
        try:
            await self.client.request("POST", CONFIGMAP.collection(self.namespace), body=configmap,
                                      params={"fieldManager": self.k8s.field_manager},
                                      verb="create", resource="configmaps")
            return True
        except Conflict:
            live = await self.client.request("GET", CONFIGMAP.item(self.namespace, naming.configmap_name(spec.id)),
                                             verb="get", resource="configmaps")
            live_hash = (live["metadata"].get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
            if live_hash != spec.fingerprint():
                raise Conflict(f"agent {spec.id!r} already exists with a different spec", field="id") from None
            return False

    async def apply_objects(self, objects: list[dict[str, Any]], *, force: bool | None = None) -> None:
        """Apply the rendered objects: PVC, StatefulSet, then the Service and
        ConfigMap with an ownerReference to the StatefulSet."""
        assert self.client is not None
        force = self.k8s.force_conflicts if force is None else force
        by_kind = {o["kind"]: o for o in objects}
        apply = lambda obj: self.client.apply(obj, field_manager=self.k8s.field_manager, force=force)  # noqa: E731
        await apply(by_kind["PersistentVolumeClaim"])
        sts = await apply(by_kind["StatefulSet"])
        owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"],
                 "uid": sts["metadata"]["uid"]}
        for kind in ("Service", "ConfigMap"):
            await apply(with_owner(by_kind[kind], owner))

    async def _roll_back(self, agent_id: str, *, delete_claim: bool) -> None:
        """Remove what a failed create made, so that the next create starts clean."""
        assert self.client is not None
        names = naming.object_names(agent_id)
        targets = [(STATEFULSET, names["statefulset"]), (SERVICE, names["service"]), (CONFIGMAP, names["configmap"])]
        if delete_claim:
            targets.append((PVC, names["pvc"]))
        for kind, name in targets:
            try:
                await self.client.delete(kind.item(self.namespace, name), resource=kind.plural)
            except BackendError as exc:
                log.warning("could not roll back %s %s: %s", kind.name, name, exc)

    async def delete(self, session: str, agent_id: str, purge: bool = False) -> AgentState:
        assert self.client is not None
        state = await self.get(session, agent_id)
        names = naming.object_names(agent_id)
        self.reconciler.forget(agent_id)
        # The StatefulSet first: from then on no proxy re-applies the agent's other objects.
        targets = [(STATEFULSET, names["statefulset"]), (SERVICE, names["service"]), (CONFIGMAP, names["configmap"])]
        if purge:
            targets.append((PVC, names["pvc"]))
        for kind, name in targets:
            await self.client.delete(kind.item(self.namespace, name), resource=kind.plural)
        return AgentState(spec=state.spec, mode=self.mode, status=AgentStatus.STOPPING, created_at=state.created_at,
                          reason="Deleting", message="purging data too" if purge else "data is kept",
                          details=state.details)

    async def logs(self, session: str, agent_id: str, tail_lines: int = 100) -> str:
        assert self.client is not None
        await self.get(session, agent_id)
        return await self.client.text(f"{POD.item(self.namespace, naming.pod_name(agent_id))}/log",
                                      params={"tailLines": str(tail_lines)}, verb="get", resource="pods/log")

    def events(self) -> AsyncIterator[StatusEvent]:
        return self.hub.subscribe()

    # --- watch events ----------------------------------------------------------

    def _on_change(self, kind: Kind, event_type: str, obj: dict[str, Any]) -> None:
        agent_id = (obj["metadata"].get("labels") or {}).get(naming.LABEL_AGENT_ID)
        if not agent_id or self.cache is None:
            return
        state = self._publish(agent_id)
        if self.first_messages is not None:
            if state is None:
                self.first_messages.forget(agent_id)
            else:
                self.first_messages.observe(agent_id, state.spec.message, state.status is AgentStatus.READY,
                                            state.upstream)
        if kind in (SERVICE, CONFIGMAP, STATEFULSET):
            self.reconciler.schedule(agent_id)


    def _publish(self, agent_id: str) -> AgentState | None:
        """Derive the agent's state again and publish it when it changed visibly."""
        if self.cache is None:
            return None
        state = self.state_of(agent_id)
        previous = self._last.get(agent_id)
        if state is None:
            if previous is not None:
                del self._last[agent_id]
                self.hub.publish(StatusEvent("deleted", previous))
        elif previous is None:
            self._last[agent_id] = state
            self.hub.publish(StatusEvent("added", state))
        elif _visible(previous) != _visible(state):
            self._last[agent_id] = state
            self.hub.publish(StatusEvent("modified", state))
        return state


def _check_same(existing: AgentSpec, requested: AgentSpec) -> None:
    if existing.fingerprint() != requested.fingerprint():
        if existing.session != requested.session:
            raise Conflict(f"agent id {requested.id!r} is already used in another session", field="id")
        raise Conflict(f"agent {requested.id!r} already exists with a different spec", field="id")


def _visible(state: AgentState) -> tuple:
    return (state.status, state.reason, state.message, state.upstream, state.restarts)


def _timestamp(obj: dict[str, Any] | None) -> datetime:
    text = ((obj or {}).get("metadata") or {}).get("creationTimestamp")
    if not text:
        return datetime.now(timezone.utc)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
