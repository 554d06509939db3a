"""The k8s backend: agents as StatefulSets, applied server-side, watched through one cache.

The proxy keeps no state of its own. The ConfigMap is an agent's claim: it is
created (not applied) first, so that of two creates of one id with different
specs exactly one wins, across any number of proxy replicas; it and the
StatefulSet carry the agent's spec as an annotation, which is all a restarted
proxy needs to rebuild everything. A suspended agent's StatefulSet has no
replicas and an annotation saying so; suspends and resumes apply it on the
condition that it has not changed since it was read, so that of several proxies
exactly one carries each out.

This module does the I/O; what to apply in which order, forced or not, owned or
not is decided by :func:`.plan.plan` (and carried out by :func:`.plan.carry_out`),
what to delete, an agent's state and drift by the pure functions of :mod:`.model`.

While the API server does not answer (see :mod:`.health`), ``/readyz`` says so
and creates fail at once with 503. A create cut off half-way is rolled back, at
once or, when the server does not answer, as soon as it answers again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ... import heap, naming
from ...render import RenderCache, RenderError, missing_key
from ...settings import Settings
from ...spec import AgentSpec
from ...teams.config import teams_of
from ...teams.credentials import agent_holders, resolve_env
from ..base import (
    AgentState,
    AgentStatus,
    Backend,
    BackendError,
    Conflict,
    MetricSample,
    NotFound,
    Rejected,
    Unavailable,
    different_spec,
)
from ..conversation import FirstMessageTracker, read_activity
from ..index import ANY_OWNER, StateIndex
from ..limits import CreateLimits
from ..pooling import configured_pools
from ..progress import K8S_PLAN, Fact, Facts
from ..suspension import AgentActivity, Suspension
from . import model, poolmembers, questions, steps, upkeep
from .cache import NamespaceCache, event_agent
from .client import Client, NamespaceMissing
from .deliveries import DeliveryLeases
from .health import ApiHealth
from .hookstore import ClusterHookStore
from .kinds import CONFIGMAP, EVENT, POD, PVC, SECRET, SERVICE, STATEFULSET, Kind, kind_of, path_of
from .leases import ScheduleLeases
from .ledger import QuotaLedger
from .plan import Purpose, as_applied, carry_out, plan
from .pool import K8sPools
from .reconcile import CLAIM_GRACE, Reconciler
from .rollback import Rollbacks
from .secrets import SecretCredentialStore, agent_secret, agent_secret_name

log = logging.getLogger(__name__)

SPEC_ANNOTATION = model.SPEC_ANNOTATION
SPEC_HASH_ANNOTATION = model.SPEC_HASH_ANNOTATION

LIVE: Any = object()
"""For :meth:`K8sBackend.render`: the suspension the StatefulSet has now."""
DERIVE_BATCH = 256
"""Agents derived between two yields to the event loop after a start's lists."""
SCALE_ATTEMPTS = 5
"""Suspend and resume re-read and try again this often when the StatefulSet changed meanwhile."""
SCALE_BACKOFF = 0.01
"""Seconds before the first read again, four times as long before each next (10 to 640 ms, 0.85 s
in all, as client-go's retry on conflict): the StatefulSet controller writes the status of a
starting agent's StatefulSet several times within a second, and reading again at once could
meet each of those writes (three attempts in a row did, once)."""
READ_BACK_TIMEOUT = 10.0
"""Seconds a suspend, resume or share waits for the watch to show its own write, at most."""


class K8sBackend(Backend):
    """Agents in one namespace of one cluster."""

    mode = model.MODE
    progress_plan = K8S_PLAN
    resource_version_ids = True

    def __init__(self, settings: Settings, client: Client | None = None, **cache_options: float) -> None:
        super().__init__(CreateLimits.from_settings(settings.agents))
        self.settings = settings
        self.k8s = settings.k8s_mode
        self.namespace = self.k8s.namespace
        self.client = client
        self.cache: NamespaceCache | None = None
        self.specs = model.SpecReader()
        self.manifests = RenderCache(settings)
        """Rendered manifests by spec and suspension: an agent is rendered once, not on every apply."""
        self.index = StateIndex()
        """Every agent's state, derived again for an agent whenever a watch event (or its first
        message) touches it, and by session and owner: reads and lists derive nothing."""
        self.health = ApiHealth(self.k8s.api.unready_after)
        """Whether the API server answers (see :mod:`.health`)."""
        self._cache_options = {"silence_timeout": self.k8s.api.watch_silence, **cache_options}
        self.reconciler = Reconciler(self, claim_grace=max(CLAIM_GRACE, 6 * self.k8s.api.request_timeout))
        self._http: aiohttp.ClientSession | None = None
        self.first_messages: FirstMessageTracker | None = None
        """Follows ready agents until their first message is delivered (see :mod:`..conversation`)."""
        self.rollbacks = Rollbacks(self, check_interval=self.k8s.api.check_interval, settle=self.reconciler.settle)
        """Creates cut off half-way, rolled back at once or once the API server answers."""
        self._background: set[asyncio.Task[None]] = set()
        self.namespace_check: upkeep.NamespaceCheck | None = None
        self.loading = False
        """True while :meth:`start` lists the kinds: watch events change the cache alone."""
        self.reviews = questions.TokenReviews(self._token_review, self.namespace, self.k8s.waiting_audience)
        """Which pod sent a ``waiting_input`` report (see :mod:`.questions`)."""
        self.pool_keeper: K8sPools | None = None
        """The warm pools (see :mod:`.pool`), once started, when there are pools or members."""
        self.binding: set[str] = set()
        """Claimed members this replica is binding (their progress waits, see :meth:`progress_moved`)."""
        self.claim_facts: dict[str, dict[str, Fact]] = {}
        """The steps of the claims of this replica's warm creates (``claimed``, ``bound``), with
        their times; other replicas tell ``claimed`` from the agent's objects."""

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        api = self.k8s.api
        if self.client is None:
            self.client = await Client.connect(self.k8s.kubeconfig, self.k8s.context, health=self.health,
                                               request_timeout=api.request_timeout, retry_after=api.retry_after,
                                               max_in_flight=api.max_in_flight)
        else:
            self.client.health = self.health
            self.client.request_timeout, self.client.retry_after = api.request_timeout, api.retry_after
            self.client.max_in_flight = api.max_in_flight
        self.health.on_recovery(self._recovered)
        # One pooled client for the agents' event streams; no limit, each stream holds a connection.
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), trust_env=False)
        self.first_messages = FirstMessageTracker(self._http, self.settings.agents.first_message_timeout,
                                                  self._publish)
        self.cache = NamespaceCache(self.client, self.namespace, self._on_change, **self._cache_options)
        # Each kind is listed on its own: until all are, the cache is a partial view (claims
        # without their StatefulSets, say). Nothing is derived, published or reconciled from
        # it: every agent is derived once, when every kind is listed.
        self.progress_paused = self.loading = True
        # The lists and the agents' states are what this process keeps: loaded without the
        # collector traversing them again and again (see ...heap).
        with heap.loading():
            await self.cache.start()
            self.loading = False
            await self._derive_all()
        self.follow_progress()
        # Every change after the lists is seen from here on: a client's event id from then on
        # can be served (see ..eventlog).
        listed = [int(r.resource_version) for r in self.cache.required if r.resource_version.isdigit()]
        if listed:
            self.event_log.known_from(max(listed))
        self.namespace_check = upkeep.NamespaceCheck(self.client, self.namespace, self.k8s.field_manager)
        await self.namespace_check.check()
        if self.namespace_check.problem:
            await self.close()
            raise Unavailable(self.namespace_check.problem)
        self.spawn(self.health.run_checks(self._check, api.check_interval), "api-server-checks")
        self.spawn(self.namespace_check.run(), "namespace-checks")
        # Drift while no replica watched, abandoned claims: every agent looked at once, one after
        # another, requests served between two.
        self.reconciler.sweep(self.cache.agent_ids())
        configured = configured_pools(self.settings)
        keeper = K8sPools(self, configured)
        keeper.scan()
        if configured or keeper.members():  # a removed pool's members still go
            await keeper.start()
            self.pool_keeper = self.pools = keeper

    @property
    def http(self) -> aiohttp.ClientSession | None:
        """The client of the agents' own HTTP (event streams, a pool member's binding)."""
        return self._http

    async def close(self) -> None:
        if self.pool_keeper is not None:
            await self.pool_keeper.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.reconciler.close()
        if self.cache is not None:
            await self.cache.close()
        if self.first_messages is not None:
            await self.first_messages.close()
        if self._http is not None:
            await self._http.close()
        if self.client is not None:
            await self.client.close()  # its connections; the client can open them again

    async def healthy(self) -> bool:
        return await self.readiness() is None

    async def readiness(self) -> str | None:
        """None while the API server answers and every watch is established, else why not."""
        if self.cache is None:
            return "the k8s backend has not started"
        missing = self.namespace_check.problem if self.namespace_check else None
        return self.health.reason() or missing or self.cache.problem()

    def metrics(self) -> list[MetricSample]:
        """Drift repairs by kind, rollbacks, abandoned claims, relists, the API server's answers,
        and the warm pools' members and claims."""
        return upkeep.samples(self) + (self.pool_keeper.metrics() if self.pool_keeper is not None else [])

    async def _check(self) -> None:
        """One check that the API server answers: a list of at most one claim."""
        assert self.client is not None
        await self.client.request("GET", CONFIGMAP.collection(self.namespace),
                                  params={"labelSelector": naming.MANAGED_SELECTOR, "limit": "1"},
                                  verb="list", resource="configmaps", check_timeout=self.k8s.api.unready_after)

    def caught_up(self) -> bool:
        """True while the API server answers and every watch of the cache is current."""
        return self.health.answering() and (self.cache is None or self.cache.problem() is None)

    def _recovered(self) -> None:
        """The API server answers again: resume the watches now and finish cut-off creates."""
        if self.cache is not None:
            self.cache.wake()

    def spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        """Run ``coroutine`` in the background until it ends or the backend closes."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- reading from the cache -------------------------------------------------

    def cached(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object as the watch cache holds it."""
        assert self.cache is not None
        return self.cache.get(kind, name)

    def cached_of_agent(self, kind: Kind, agent_id: str) -> list[dict[str, Any]]:
        """The cached objects of ``kind`` labelled for the agent."""
        assert self.cache is not None
        return self.cache.of_agent(kind, agent_id)

    def spec_of(self, agent_id: str) -> AgentSpec | None:
        """The agent's spec as stored in the cluster (claim first, then StatefulSet)."""
        return self.specs.spec(model.AgentObjects.of(agent_id, self.cached))

    def state_of(self, agent_id: str, statefulset: Any = LIVE) -> AgentState | None:
        """The agent's state from cached objects (with ``statefulset`` instead of the cached one,
        when given), or None when it does not exist."""
        assert self.cache is not None
        objects = model.AgentObjects.of(agent_id, self.cached, self.cache.events_of(agent_id))
        if statefulset is not LIVE:
            objects = dataclasses.replace(objects, statefulset=statefulset)
        spec = self.specs.spec(objects)
        if spec is None:
            return None
        overdue = self.first_messages.overdue(agent_id) if self.first_messages else None
        return model.agent_state(spec, objects, namespace=self.namespace, pod_address=self.k8s.pod_address,
                                 first_message_overdue=overdue)

    def _start_facts(self, state: AgentState) -> Facts:
        if self.cache is None:
            return {}
        delivered = self.first_messages is not None and self.first_messages.delivered(state.id)
        facts = steps.start_facts(model.AgentObjects.of(state.id, self.cached), delivered, pool=state.spec.pool)
        return {**facts, **self.claim_facts.get(state.id, {})}

    def _observe_progress(self, state: AgentState) -> None:
        # While this replica binds a claimed member, its pod's state is the member's (kwok marks a
        # pod Ready at once): the claim's steps come first, once the binding is done.
        if state.id not in self.binding:
            super()._observe_progress(state)

    def progress_moved(self, agent_id: str) -> None:
        """The binding of a claimed member is done (taken or not): its start's progress moves on
        from what is known now."""
        self.binding.discard(agent_id)
        self._observe_progress_now(agent_id)

    def _state(self, agent_id: str) -> AgentState | None:
        return self.index.get(agent_id) if self.cache else None

    def _states(self) -> Iterable[AgentState]:
        assert self.cache is not None
        return self.index.states()

    def _specs(self) -> Iterable[AgentSpec]:
        assert self.cache is not None
        return list(self.index.specs())

    def _listed(self, session: str | None, owner: Any) -> list[AgentState]:
        return self.index.states(session, owner)

    def _in_order(self, session: str | None, owner: Any) -> list[AgentState]:
        if session is None and owner is ANY_OWNER:
            return self.index.ordered() if self.cache else []
        return super()._in_order(session, owner)

    def _peers(self, spec: AgentSpec) -> Iterable[AgentSpec]:
        ids = set(self.index.ids(spec.session))
        if spec.owner is not None:
            ids.update(self.index.ids(owner=spec.owner))
        return [state.spec for state in map(self.index.get, ids) if state is not None]

    def busy(self, agent_id: str) -> bool:
        """True while a create or delete of this agent is under way in this proxy."""
        return self.locks.held(agent_id)

    # --- writing ---------------------------------------------------------------

    def render(self, spec: AgentSpec, suspension: Suspension | None = LIVE) -> list[dict[str, Any]]:
        """The agent's manifests with the StatefulSet of ``suspension`` (by default the one it has
        now: whatever re-applies the agent keeps a suspended one suspended), from
        :attr:`manifests` (shared: never changed); a template problem is the request's problem (422)."""
        if suspension is LIVE:
            suspension = model.suspension_of(self.cached(STATEFULSET, naming.statefulset_name(spec.id))
                                              if self.cache is not None else None)
        try:
            return self.manifests.agent(spec, **model.workload(suspension))
        except RenderError as exc:
            raise Rejected(str(exc), field=exc.field) from None

    async def apply(self, obj: dict[str, Any], *, force: bool | None = None,
                    dry_run: bool = False) -> dict[str, Any]:
        """Server-side apply of one object with this proxy's field manager."""
        assert self.client is not None
        force = self.k8s.force_conflicts if force is None else force
        return await self.client.apply(obj, field_manager=self.k8s.field_manager, force=force, dry_run=dry_run)

    async def delete_object(self, kind: Kind, name: str, *, seen: str | None = None) -> bool:
        """Delete one object of the namespace; False when it was gone. With ``seen`` (the
        ``resourceVersion`` a decision to delete it was made on), only while it is still that
        version: :class:`Conflict` when it changed since."""
        assert self.client is not None
        return await self.client.delete(kind.item(self.namespace, name), resource=kind.plural, resource_version=seen)

    async def exists(self, kind: Kind, name: str) -> bool:
        """Whether the API server holds the object of the namespace now (read from it, not the cache)."""
        assert self.client is not None
        return await self.client.get(kind.item(self.namespace, name), resource=kind.plural) is not None

    async def _prepare(self, spec: AgentSpec | None) -> list[dict[str, Any]] | None:
        assert self.client is not None
        # While the API server does not answer, fail now rather than after a timeout.
        self.client.require_answering()
        if spec is None:
            return None
        problem = missing_key(self.settings, spec)
        if problem is not None:
            raise Rejected(problem, field="agent")
        assert self.cache is not None
        return self.render(spec)

    async def _create_new(self, spec: AgentSpec, objects: list[dict[str, Any]]) -> AgentState:
        # Data kept from an earlier agent of this id is never rolled back.
        live = model.AgentObjects.of(spec.id, self.cached)
        had_data = live.pvc is not None
        create = plan(objects, live, Purpose.CREATE)
        assert create.claim is not None  # a create's plan starts with its claim
        self.reconciler.note_applied(spec.id)  # our own half-applied agent is not drift
        try:
            claimed, stored = await self._claim(spec, create.claim)
        except NamespaceMissing as exc:
            if self.namespace_check is not None:
                self.namespace_check.missing(exc)
            raise
        except Unavailable:
            # The claim may have been stored without its answer reaching us: remove it once
            # the server answers (a claim that was never made is simply not found then).
            self.rollbacks.later(spec.id, delete_data=not had_data)
            raise
        try:
            await self.write_credentials(spec, stored)
            await carry_out(create, self.apply)
            self.reconciler.note_applied(spec.id)
        except BackendError:
            if claimed:
                await self.rollbacks.now(spec.id, delete_data=not had_data)
            raise
        self.rollbacks.settled(spec.id)  # this create finished what an earlier one left
        current = self.state_of(spec.id)
        return model.applied_state(spec, self.namespace, current.created_at if current else datetime.now(UTC))

    async def _claim_member(self, spec: AgentSpec, member: Any, prepared: Any) -> AgentState:
        # The claim's conditional write, its binding, its objects relabelled (see .pool).
        assert self.pool_keeper is not None
        return await self.pool_keeper.claim(spec, member)

    async def _create_again(self, existing: AgentState, objects: list[dict[str, Any]]) -> AgentState:
        # Applied again: a repeat repairs what is missing, like `kubectl apply`.
        self.reconciler.note_applied(existing.id)
        live = model.AgentObjects.of(existing.id, self.cached)
        await carry_out(plan(objects, live, Purpose.REAPPLY), self.apply)
        self.reconciler.note_applied(existing.id)
        self.rollbacks.settled(existing.id)  # the agent is whole again: nothing to roll back
        current = self.state_of(existing.id)
        if current is not None:
            return current  # an idempotent repeat reports the agent as it is
        return model.applied_state(existing.spec, self.namespace, datetime.now(UTC))

    def quota_ledger(self) -> QuotaLedger:
        """The creates every replica let through in the last moments (see :mod:`.ledger`)."""
        assert self.client is not None
        return QuotaLedger(self.client, self.namespace, self.k8s.field_manager)

    def schedule_claims(self) -> ScheduleLeases:
        """The schedules' claims, shared by every replica through Leases (see :mod:`.leases`)."""
        assert self.client is not None
        return ScheduleLeases(self.client, self.namespace, self.k8s.field_manager)

    def hook_store(self) -> ClusterHookStore:
        """Hooks defined through the API, in a ConfigMap and a Secret (see :mod:`.hookstore`)."""
        return ClusterHookStore(lambda: self.client, self.namespace, self.k8s.field_manager)

    def delivery_claims(self, replica: str) -> DeliveryLeases:
        """Hook delivery ids shared by every replica, a Lease each (see :mod:`.deliveries`)."""
        return DeliveryLeases(lambda: self.client, self.namespace, self.k8s.field_manager, replica)

    def credential_store(self) -> SecretCredentialStore:
        """The credentials of users and groups, in their Secrets (see :mod:`.secrets`)."""
        assert self.client is not None
        return SecretCredentialStore(self.client, self.namespace, self.k8s.field_manager)

    def _credential_variables(self, spec: AgentSpec) -> bool:
        profile, holders = agent_holders(self.settings, spec.owner, spec.group, spec.profile)
        return profile is not None and bool(holders)

    async def write_credentials(self, spec: AgentSpec, configmap: Mapping[str, Any] | None) -> dict[str, str]:
        """Write the agent's Secret of credential variables (when its profile maps any) from its
        holders' Secrets, owned by its ConfigMap: the container reads it by secretKeyRef. The
        variables written (a claimed pool member gets them in its binding too)."""
        profile, holders = agent_holders(self.settings, spec.owner, spec.group, spec.profile)
        if profile is None or not holders:
            return {}
        env = await resolve_env(self.credential_store().values, profile, holders)
        await self.apply(agent_secret(self.namespace, spec.id, spec.session, env, configmap), force=True)
        return env

    async def _claim(self, spec: AgentSpec, configmap: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Create the ConfigMap; whether this call created it, and the ConfigMap as stored (the
        create's own answer: its uid owns the agent's Secret, with no read of it again). An
        existing one with another spec means the id is taken."""
        assert self.client is not None
        try:
            stored = await self.client.request("POST", CONFIGMAP.collection(self.namespace), body=configmap,
                                               params={"fieldManager": self.k8s.field_manager},
                                               verb="create", resource="configmaps")
            return True, stored
        except Conflict:
            live = await self.client.request("GET", CONFIGMAP.item(self.namespace, naming.configmap_name(spec.id)),
                                             verb="get", resource="configmaps")
            if model.annotation(live, SPEC_HASH_ANNOTATION) != spec.fingerprint():
                raise different_spec(spec.id) from None
            return False, live

    async def _delete(self, state: AgentState, purge: bool) -> AgentState:
        self.reconciler.forget(state.id)
        for kind, name in model.delete_targets(state.id, purge=purge):
            await self.delete_object(kind, name)
        if self._credential_variables(state.spec):
            await self.delete_object(SECRET, agent_secret_name(state.id))  # else the garbage collector's
        try:
            if teams_of(self.settings).quotas.any:
                await self.quota_ledger().release(state.id)  # its place in the quotas is free
        except BackendError as exc:
            log.warning("agent %s: its quota reservation stays until it expires: %s", state.id, exc)
        return model.deleting_state(state, purge)

    async def _suspend(self, state: AgentState, suspension: Suspension, guard: Any) -> tuple[AgentState, bool]:
        return await self._scale(state, suspension, guard)

    async def _share(self, state: AgentState, spec: AgentSpec) -> AgentState:
        # Applied again with the new spec: only the spec's annotations change (the pod template
        # holds nothing of the group), so the agent runs (or sleeps) on as it was.
        self.reconciler.note_applied(spec.id)
        live = model.AgentObjects.of(spec.id, self.cached)
        async def apply_taking_over(obj: dict[str, Any], force: bool | None = None) -> dict[str, Any]:
            # The spec's annotations were set by the claim's create (another operation of this
            # proxy's field manager): taken over, as this proxy's own.
            return await self.apply(obj, force=True)

        for _, stored in await carry_out(plan(self.render(spec), live, Purpose.REAPPLY), apply_taking_over):
            await self.read_back(kind_of(stored), stored)
        self.reconciler.note_applied(spec.id)
        current = self.state_of(spec.id)
        return dataclasses.replace(current or state, spec=spec)

    async def read_back(self, kind: Kind, stored: Mapping[str, Any]) -> None:
        """Wait (at most :data:`READ_BACK_TIMEOUT`) until the watch cache shows ``stored``, the
        server's answer to this proxy's write: the next operation on the agent decides from the
        cache (a resume right after a suspend must see the agent suspended, not do nothing)."""
        assert self.cache is not None
        metadata = stored.get("metadata") or {}
        version = metadata.get("resourceVersion")
        if version and not await self.cache.wait_seen(kind, metadata["name"], version, READ_BACK_TIMEOUT):
            log.debug("the watch of %s has not shown %s at %s yet", kind.plural, metadata["name"], version)

    async def _resume(self, state: AgentState) -> tuple[AgentState, bool]:
        # The credentials as they are now: a changed one applies at this start.
        await self.write_credentials(state.spec, self.cached(CONFIGMAP, naming.configmap_name(state.id)))
        return await self._scale(state, None, None)

    async def _scale(self, state: AgentState, suspension: Suspension | None, guard: Any) -> tuple[AgentState, bool]:
        """Apply the StatefulSet with the replicas and annotation of ``suspension`` (None: running)
        unless it changed since it was read; when it did, read it again: another proxy may have
        done the same meanwhile (then this one did nothing), or ``guard`` may no longer hold."""
        assert self.client is not None
        path = STATEFULSET.item(self.namespace, naming.statefulset_name(state.id))
        live = self.cached(STATEFULSET, naming.statefulset_name(state.id))
        for attempt in range(SCALE_ATTEMPTS):
            if live is None or live["metadata"].get("deletionTimestamp"):
                raise Conflict(f"agent {state.id!r} is being deleted" if live else
                               f"agent {state.id!r} has no StatefulSet yet; try again in a moment", field="agent")
            current = self.state_of(state.id, live) or state
            if attempt and (current.suspended == (suspension is not None) or (guard and not guard(current))):
                return current, False
            scale = plan(self.render(state.spec, suspension), model.AgentObjects(None, live, None, None), Purpose.SCALE)
            try:
                [(_, stored)] = await carry_out(scale, self.apply)
            except Conflict:
                if attempt == SCALE_ATTEMPTS - 1:
                    break
                log.debug("the StatefulSet of agent %s changed since it was read; reading it again", state.id)
                await asyncio.sleep(SCALE_BACKOFF * 4 ** attempt * random.uniform(0.5, 1.0))
                live = await self.client.get(path, resource="statefulsets")
                continue
            self.reconciler.note_applied(state.id)
            await self.read_back(STATEFULSET, stored)
            return self.state_of(state.id, stored) or current, True
        raise Unavailable(f"the StatefulSet of agent {state.id!r} kept changing; try again")

    async def _record_activity(self, state: AgentState, when: datetime) -> None:
        assert self.client is not None
        try:
            await self.client.request("PATCH", STATEFULSET.item(self.namespace, naming.statefulset_name(state.id)),
                                      body=model.activity_patch(when), content_type="application/merge-patch+json",
                                      params={"fieldManager": self.activity_manager}, verb="patch",
                                      resource="statefulsets")
        except NotFound:
            pass  # deleted meanwhile

    # --- waiting_input: what the hooks in the pods report (see :mod:`.questions`) -----------------

    async def report_question(self, token: str, question: str | None) -> AgentState:
        """The pod ``token`` was made for asks ``question`` (None: no longer): kept on its
        agent's StatefulSet, for every replica to show. Raises :class:`.questions.Refused`."""
        if not self.k8s.waiting_url:
            raise NotFound("k8s_mode.waiting_url is not set: this proxy takes no waiting_input reports")
        assert self.client is not None

        def current_agent_pod(name: str) -> bool:
            return model.agent_named(POD, name) is not None and self.cached(POD, name) is not None
        pod = await self.reviews.pod_of(token, current_agent_pod)
        agent_id = model.agent_named(POD, pod.name)
        live = self.cached(POD, pod.name)
        state = self.state_of(agent_id) if agent_id else None
        if state is None or live is None or live["metadata"].get("uid") != pod.uid:
            raise questions.Refused(403, "the token's pod is no longer an agent's current pod")
        statefulset = self.cached(STATEFULSET, naming.statefulset_name(state.id))
        if questions.question_of(statefulset, live) == (question or None) and (
                question or not model.annotation(statefulset, questions.QUESTION_ANNOTATION)):
            return state  # nothing to change: a hook's repeat
        stored = await self._set_question(state.id, questions.question_annotation(question, pod.uid, datetime.now(UTC)))
        # As stored: the watch may not have brought the change yet.
        return (self.state_of(state.id, stored) if stored else None) or state

    async def _set_question(self, agent_id: str, value: str | None) -> dict[str, Any] | None:
        """Set or remove the question's annotation; the StatefulSet as stored (None: it is gone)."""
        assert self.client is not None
        try:
            return await self.client.request("PATCH", STATEFULSET.item(self.namespace, naming.statefulset_name(agent_id)),
                                      body=questions.question_patch(value),
                                      content_type="application/merge-patch+json",
                                      params={"fieldManager": self.k8s.field_manager[:119] + "-waiting"},
                                      verb="patch", resource="statefulsets")
        except NotFound:
            return None  # deleted meanwhile

    async def _token_review(self, body: dict[str, Any]) -> Mapping[str, Any]:
        assert self.client is not None
        return await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body,
                                          verb="create", resource="tokenreviews")

    def answered(self, agent_id: str) -> None:
        """A message through the proxy answered the agent's question: the annotation goes (in the
        background; the watch then shows the agent ready)."""
        state = self.index.get(agent_id) if self.cache else None
        statefulset = self.cached(STATEFULSET, naming.statefulset_name(agent_id)) if self.cache else None
        if state is not None and model.annotation(statefulset, questions.QUESTION_ANNOTATION):
            self.spawn(self._clear_question(agent_id), name=f"answered {agent_id}")

    async def _clear_question(self, agent_id: str) -> None:
        try:
            await self._set_question(agent_id, None)
        except BackendError as exc:  # the hooks clear it too, when the turn goes on
            log.warning("cannot clear the question of agent %s: %s", agent_id, exc.message)

    @property
    def activity_manager(self) -> str:
        """The field manager of the last-active annotation (not the applying one: an apply would
        remove an annotation its manager set before and leaves out now)."""
        return self.k8s.field_manager[:119] + "-activity"

    async def _activity(self, state: AgentState) -> AgentActivity:
        if not state.upstream or self._http is None:
            return AgentActivity()
        return await read_activity(self._http, state.upstream)

    async def _logs(self, state: AgentState, tail_lines: int) -> str:
        assert self.client is not None
        return await self.client.text(f"{POD.item(self.namespace, naming.pod_name(state.id))}/log",
                                      params={"tailLines": str(tail_lines)}, verb="get", resource="pods/log")

    # --- for the command line ----------------------------------------------------

    async def dry_run(self, spec: AgentSpec) -> list[dict[str, Any]]:
        """Every rendered object sent as a server-side dry run (``dryRun=All``): what the server would store."""
        return [await self.apply(obj, dry_run=True) for obj in self.render(spec)]

    async def diff(self, spec: AgentSpec) -> list[str]:
        """A unified diff of every object from its live version to what applying ``spec`` would
        make of it (a forced server-side dry run); empty when nothing would change."""
        assert self.client is not None
        statefulset = self.cached(STATEFULSET, naming.statefulset_name(spec.id))
        lines: list[str] = []
        for rendered in self.render(spec):
            obj = as_applied(rendered, statefulset)  # as the backend applies them
            live = await self.client.get(path_of(obj), resource=kind_of(obj).plural)
            # Forced, so the result shows the change even where the claim's
            # create left another owner on a field (a real apply of a new spec is a conflict).
            merged = await self.apply(obj, force=True, dry_run=True)
            lines += model.object_diff(live, merged)
        return lines

    def phases(self, state: AgentState) -> list[str]:
        """The phases the agent has reached (see :func:`.model.progress`)."""
        names = naming.object_names(state.id)
        return model.progress(state, self.cached(POD, names["pod"]), self.cached(PVC, names["pvc"]))

    def gone(self, agent_id: str) -> bool:
        """True once no object of the agent is left in the cache (its pod included)."""
        return self.state_of(agent_id) is None and self.cached(POD, naming.pod_name(agent_id)) is None

    # --- watch events ----------------------------------------------------------

    def current(self) -> bool:
        """True once every kind is listed and while every watch is current: the cache is then a
        whole view (what the reconciler needs before it removes or applies anything)."""
        return not self.loading and self.cache is not None and self.cache.problem() is None

    async def _derive_all(self) -> None:
        """Derive every agent of the cache once (after the lists of a start), letting requests
        be served between batches."""
        assert self.cache is not None
        for n, agent_id in enumerate(self.cache.agent_ids()):
            self._derive(agent_id)
            if n % DERIVE_BATCH == DERIVE_BATCH - 1:
                await asyncio.sleep(0)

    def _on_change(self, kind: Kind, event_type: str, obj: dict[str, Any]) -> None:
        if self.cache is None or self.loading:
            return
        if kind is EVENT:
            agent_id = event_agent(obj)
        else:
            agent_id = model.agent_id_of(obj)
            # An agent's state reads its objects by name: one labelled for another agent (an
            # edit out of band) changes the agent it is named for too.
            named = model.agent_named(kind, obj["metadata"]["name"])
            if named and named != agent_id:
                self._publish(named)
        if not agent_id:
            return
        # The change's resourceVersion numbers the events it causes; Events may be kept in
        # another etcd, whose versions are not comparable: their changes get none.
        rv = str(obj["metadata"].get("resourceVersion") or "")
        self.event_hint = int(rv) if kind is not EVENT and rv.isdigit() else None
        try:
            self._derive(agent_id)
        finally:
            self.event_hint = None
        if kind in (SERVICE, CONFIGMAP, STATEFULSET, PVC):
            self.reconciler.schedule(agent_id)

    def _derive(self, agent_id: str) -> None:
        """Derive and publish the agent's state; follow its first message while it is ready."""
        state = self._publish(agent_id)
        if self.first_messages is not None:
            if state is None:
                self.first_messages.forget(agent_id)
            else:
                self.first_messages.observe(agent_id, state.spec.message, state.status is AgentStatus.READY,
                                            state.upstream)

    def _publish(self, agent_id: str) -> AgentState | None:
        """Derive the agent's state again, keep it in the index, and publish it when it changed
        visibly. An unchanged state stays the same object (readers may cache what they make of it)."""
        if self.cache is None:
            return None
        member = poolmembers.is_member(model.AgentObjects.of(agent_id, self.cached))
        if self.pool_keeper is not None:
            self.pool_keeper.note(agent_id, member)
        if member:
            # A pool member is no agent of anyone's until it is claimed: not listed, not counted
            # (and a create claiming it keeps its progress).
            if self.index.get(agent_id) is not None:
                self.index.remove(agent_id)
                self.publish_gone(agent_id)
            return None
        state = self.state_of(agent_id)
        if state is None:
            self.index.remove(agent_id)
            self.claim_facts.pop(agent_id, None)
            self.publish_gone(agent_id)
            return None
        previous = self.index.get(agent_id)
        if previous is not None and previous == state:
            state = previous
        else:
            self.index.put(state)
        self.publish(state)
        return state
