"""Warm pools of the k8s backend: members are agents in the cluster, found by their labels.

A member (see :mod:`.poolmembers`) is made as a cold agent is, its ConfigMap first (the claim
on its generated id), then its binding Secret (the token its pod mounts), then its PVC,
StatefulSet and Service; its launcher waits for its binding. Nothing of it is kept in the
proxy: every replica finds the members in its watch cache, so pools survive a restart of the
proxy, and a half-made member (a ConfigMap whose StatefulSet never came) is removed by the
reconciler as any abandoned claim is. Members belong to no session of a user: the backend
neither lists nor counts them.

A claim (:meth:`K8sPools.claim`) is one conditional write, a merge patch of the member's
ConfigMap carrying the ``resourceVersion`` the cache holds: the member becomes its owner's
agent, or, when another replica changed it first (409), the create takes another member or
goes cold. Then the proxy posts the owner's variables, credentials and first message to the
member's launcher (``POST /bind`` on its pod's IP, with the token of its Secret); the same
variables are in its ConfigMap and credentials Secret, so that a container that restarts
after the claim starts bound at once. The token's Secret is deleted after the claim: a
launcher that did not take its binding (it was not reached) stops waiting once the kubelet
removes the token's file, and its container starts again bound, as a cold agent starts.

A claim survives its faults (see docs/pools.md): the member's token is read before the claim (a
member without one, half-made, is replaced); a claim whose write got no answer is read back by
its mark (:data:`~.poolmembers.CLAIM_ANNOTATION`) and used if it was applied, else settled later
(:meth:`K8sPools._settle`: a member claimed for no create is removed, one still unclaimed is
fenced from the late write), so that a create never leaves a second agent. The claim's own
progress steps (``claimed``, ``bound``) are kept in the backend's ``claim_facts``.

The pools are refilled in the background from what the cache shows, by the replica that holds
the refill lease (see :mod:`.poollease`); the others read nothing while they have nothing to
do. A member is removed with the precondition of the ``resourceVersion`` it was seen at, so
that a member claimed meanwhile is never removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp

from ... import naming
from ...launcher import BIND_PATH
from ...pools import READY, WARM, Decision, Member, counts, decide, refill_plan
from ...render import binding_secret_name, missing_key
from ...spec import AgentSpec
from ..base import AgentState, BackendError, Conflict, MetricSample, NotFound, Unavailable
from ..pooling import ConfiguredPool, MemberTaken, member_spec, pool_shapes, spec_shape
from ..progress import BOUND, CLAIMED, Fact
from . import model
from .kinds import CONFIGMAP, POD, SECRET, SERVICE, STATEFULSET
from .model import Obj
from .plan import Plan, Purpose, carry_out, plan
from .poollease import RefillLease
from .poolmembers import (
    CLAIM_ANNOTATION,
    OURS,
    binding_secret,
    binding_url,
    claim_outcome,
    claim_patch,
    member_view,
    pool_of,
    token_of,
)

if TYPE_CHECKING:
    from .backend import K8sBackend

log = logging.getLogger(__name__)

CHECK_INTERVAL = 2.0
"""Seconds between two looks at the pools' members (the watch cache: no API call)."""
REFILL_AFTER_CLAIM = 1.0
"""Seconds from this proxy's latest claim to the members it makes: the claimed agents' writes
go first (a burst of creates is served by the members there were, then the pool is refilled)."""
WARM_TIMEOUT = 300.0
"""Seconds a member may take to wait for its binding (scheduling, an image pull, a volume)
before it is replaced."""
BIND_TIMEOUT = 10.0
"""Seconds the launcher of a claimed member has to take its binding."""
READ_BACK_TRIES = 3
"""Reads of a member's ConfigMap after its claim's write got no answer."""
SETTLE_DELAY = 5.0
SETTLE_TRIES = 12
"""A claim its create did without (its write got no answer) is looked at every SETTLE_DELAY
seconds, at most this many times, until it is settled: applied after all, its member is
removed; not applied, its member is fenced from it and serves creates again."""
DROP_TRIES = 5
"""Tries to delete a claimed member's token Secret (its launcher waits while it is there)."""


class K8sPools:
    """The pools of one k8s backend, kept full in the background."""

    def __init__(self, backend: K8sBackend, pools: tuple[ConfiguredPool, ...]) -> None:
        self.backend = backend
        self.pools = {p.name: p for p in pools}
        self.claims = 0
        """Creates this proxy served with a member since its start."""
        self._reserved: set[str] = set()
        """Members taken by a create of this proxy, until its claim is written or given up."""
        self._making: dict[str, str] = {}
        """Members this proxy is making (id -> pool)."""
        self._removing: set[str] = set()
        self._doubtful: set[str] = set()
        """Members whose claim's write got no answer, looked at again (see :meth:`_settle`):
        no create takes them meanwhile."""
        self._refused: set[str] = set()
        """Pools whose members could serve no create (told once)."""
        self._ids: set[str] = set()
        """The agents whose objects are a member's (see :meth:`note`)."""
        assert backend.client is not None
        self.lease = RefillLease(backend.client, backend.namespace, backend.k8s.field_manager)
        """Held by the one replica that makes and removes members (see :mod:`.poollease`)."""
        self._last_claim = float("-inf")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy: set[asyncio.Task[None]] = set()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Keep the pools full from now on."""
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="k8s pools")

    async def close(self) -> None:
        """Stop refilling; members keep waiting for the next start (of any replica)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._busy):
            task.cancel()
        if self._busy:
            await asyncio.gather(*self._busy, return_exceptions=True)
        try:
            await self.lease.release()
        except BackendError as exc:  # it expires by itself
            log.debug("the pool refill lease was not released: %s", exc.message)

    def wake(self) -> None:
        """Look at the pools now rather than at the next check."""
        self._wake.set()

    # --- what the cache shows -------------------------------------------------------------------

    def scan(self) -> None:
        """Find every member the watch cache holds (once, at the start; from then on the backend
        tells :meth:`note` of every change)."""
        backend = self.backend
        if backend.cache is None:
            return
        for kind in (CONFIGMAP, STATEFULSET):  # a member whose ConfigMap is gone is one still
            for obj in backend.cache.objects(kind):
                agent_id = model.agent_id_of(obj)
                if agent_id is not None and pool_of(obj) is not None:
                    self.note(agent_id, True)

    def note(self, agent_id: str, member: bool) -> None:
        """The objects of ``agent_id`` changed: they are a member's now, or not (any more)."""
        if member:
            self._ids.add(agent_id)
        else:
            self._ids.discard(agent_id)

    def members(self) -> list[Member]:
        """Every member the watch cache holds, with its state."""
        backend = self.backend
        if backend.cache is None:
            return []
        now = datetime.now(UTC)
        found = []
        for agent_id in list(self._ids):
            view = member_view(agent_id, model.AgentObjects.of(agent_id, backend.cached), now, WARM_TIMEOUT)
            if view is not None:
                found.append(view)
        return found

    # --- claims ---------------------------------------------------------------------------------

    def take(self, spec: AgentSpec) -> tuple[Decision, Member | None]:
        """The decision for ``spec`` (a create naming no id) and a ready member taken for it (no
        other create of this proxy can take it; another replica may, which its claim finds out).
        Of several ready members one is taken at random: two replicas taking at once seldom
        take the same."""
        shapes = pool_shapes(tuple(self.pools.values()))
        ready = [m for m in self.members() if m.state == READY and m.id not in self._reserved
                 and m.id not in self._removing and m.id not in self._doubtful
                 and m.pool in self.pools and self.pools[m.pool].shape == m.shape]
        by_pool: dict[str, int] = {}
        for member in ready:
            by_pool[member.pool] = by_pool.get(member.pool, 0) + 1
        decision = decide(names_id=False, shape=spec_shape(spec), pool_shapes=shapes, ready=by_pool)
        if decision.start != WARM or decision.pool is None:
            if decision.pool is not None:
                self.wake()
            return decision, None
        member = random.choice([m for m in ready if m.pool == decision.pool])
        self._reserved.add(member.id)
        return decision, member

    def give_back(self, member: Any) -> None:
        """A member taken for a create refused before its claim was written: ready again."""
        self._reserved.discard(member.id)
        self.wake()

    def discard(self, member: Any) -> None:
        """A member whose claim failed: another replica claimed it, or it is gone. Whatever is
        left of it the refill sees."""
        self._reserved.discard(member.id)
        self.wake()

    async def claim(self, spec: AgentSpec, member: Member) -> AgentState:
        """Make ``member`` the agent of ``spec`` (whose id is the member's): the conditional write
        of its ConfigMap, then its credentials, its binding, and its other objects relabelled.
        Raises :class:`MemberTaken` when another replica claimed it first, when it turns out
        half-made (no token), or when the write got no answer and was not applied."""
        backend = self.backend
        assert backend.client is not None
        spec = dataclasses.replace(spec, pool=member.pool)
        names = naming.object_names(spec.id)
        live = backend.cached(CONFIGMAP, names["configmap"])
        if live is None or pool_of(live) != member.pool or live["metadata"].get("deletionTimestamp"):
            raise MemberTaken(f"pool member {member.id} is no longer one")
        # The token before the claim: a member without one (half-made by a proxy that died) could
        # never be bound. It is replaced, and the create takes another member.
        token = token_of(await backend.client.get(SECRET.item(backend.namespace, binding_secret_name(spec.id)),
                                                  resource="secrets"))
        if token is None:
            # Another replica's claim drops the token too: the removal holds only while the
            # ConfigMap is still the version this create saw as a member.
            self._start(self._remove(member.id, live["metadata"]["resourceVersion"]),
                        f"remove pool member {member.id} (no binding token)")
            raise MemberTaken(f"pool member {member.id} has no binding token; it is replaced")
        rendered = backend.render(spec)
        configmap = next(o for o in rendered if o["kind"] == CONFIGMAP.name)
        backend.reconciler.note_applied(spec.id)
        # Its progress waits for the binding from the write on: the watch may show the claim (and
        # the member's Ready pod) before the write's answer comes.
        backend.binding.add(spec.id)
        try:
            stored = await self._write_claim(member, live, configmap)
        except BaseException:
            backend.binding.discard(spec.id)
            raise
        # Still reserved: until the cache shows the claim, the member looks ready (see _refill).
        # From here on the agent is its owner's, whatever happens to its binding.
        self.claims += 1
        self._last_claim = asyncio.get_running_loop().time()
        asyncio.get_running_loop().call_later(REFILL_AFTER_CLAIM, self.wake)
        backend.claim_facts[spec.id] = {
            CLAIMED: Fact(datetime.now(UTC), f"member {member.id} of pool {member.pool!r} is claimed")}
        try:
            await backend.claim_written(spec.id)
            credentials = await backend.write_credentials(spec, stored)
            # What its ConfigMap gives a container that starts again: the same variables.
            env = {**(configmap.get("data") or {}), **credentials}
            if await self._bind(spec.id, env, token):
                backend.claim_facts[spec.id][BOUND] = Fact(datetime.now(UTC), "its launcher took the binding and "
                                                                              "started agentapi")
            backend.progress_moved(spec.id)
            # Its StatefulSet's and Service's labels say its owner's session after the create's
            # answer: the agent is its ConfigMap's already, and a proxy that dies meanwhile
            # leaves them to the reconciler.
            backend.spawn(self._relabel(spec.id, rendered, member.pool), f"relabel the objects of {spec.id}")
        except BackendError as exc:
            # The agent is there and bound in its ConfigMap: the reconciler applies what is missing.
            log.warning("agent %s claimed from pool %s: %s; the reconciler finishes it", spec.id, member.pool, exc)
            backend.reconciler.schedule(spec.id)
        finally:
            if spec.id in backend.binding:
                backend.progress_moved(spec.id)
        backend.reconciler.note_applied(spec.id)
        backend.spawn(self._drop_token(spec.id), f"drop the binding token of {spec.id}")
        await backend.read_back(CONFIGMAP, stored)
        current = backend.state_of(spec.id)
        return current or model.applied_state(spec, backend.namespace, datetime.now(UTC))

    async def _relabel(self, agent_id: str, rendered: list[dict[str, Any]], pool: str) -> None:
        """Apply a claimed member's StatefulSet and Service as its agent's, under the agent's
        lock (taken once the create that claimed it is answered): a delete waits for it, and an
        agent deleted meanwhile (its ConfigMap or StatefulSet gone or going) is not made again."""
        backend = self.backend
        async with backend.locks.hold(agent_id):
            objects = model.AgentObjects.of(agent_id, backend.cached)
            if (objects.claim is None or objects.statefulset is None
                    or objects.claim["metadata"].get("deletionTimestamp")
                    or objects.statefulset["metadata"].get("deletionTimestamp")):
                return
            await self._relabel_now(agent_id, rendered, pool, objects)

    async def _relabel_now(self, agent_id: str, rendered: list[dict[str, Any]], pool: str,
                           objects: model.AgentObjects) -> None:
        backend = self.backend
        try:
            steps = plan(rendered, objects, Purpose.REAPPLY)
            relabel = Plan(tuple(s for s in steps.steps if s.kind in (STATEFULSET.name, SERVICE.name)),
                           owner=steps.owner)
            await carry_out(relabel, backend.apply)
        except BackendError as exc:
            log.warning("agent %s claimed from pool %s: %s; the reconciler finishes it", agent_id, pool, exc)
            backend.reconciler.schedule(agent_id)
        backend.reconciler.note_applied(agent_id)

    async def _write_claim(self, member: Member, live: Obj, configmap: Obj) -> dict[str, Any]:
        """The claim's conditional write; the ConfigMap as stored. A write that got no answer
        (a timeout: it may or may not have been applied) is read back: carrying this claim's
        mark, it was applied and the agent is this create's; else the create takes another
        member, and the member is looked at again a while later, in case the write was applied
        after all (see :meth:`_settle`)."""
        backend = self.backend
        assert backend.client is not None
        mark = secrets.token_hex(8)
        path = CONFIGMAP.item(backend.namespace, naming.configmap_name(member.id))
        try:
            stored: dict[str, Any] = await backend.client.request(
                "PATCH", path, body=claim_patch(live, configmap, mark), content_type="application/merge-patch+json",
                params={"fieldManager": backend.k8s.field_manager}, verb="patch", resource="configmaps")
            return stored
        except (Conflict, NotFound):
            raise MemberTaken(f"pool member {member.id} was claimed by another replica or removed") from None
        except Unavailable as exc:
            log.warning("the claim of pool member %s got no answer (%s); reading it back", member.id, exc.message)
        for _ in range(READ_BACK_TRIES):
            try:
                current = await backend.client.get(path, resource="configmaps")
            except BackendError:
                continue
            if claim_outcome(current, mark) == OURS:
                assert current is not None
                return current
            break
        # Not applied, or not known: this create does without it; should the write land after
        # all, the member it claimed for nobody is removed (and the pool refilled).
        self._doubtful.add(member.id)
        self._start(self._settle(member.id, mark), f"settle the unanswered claim of {member.id}")
        raise MemberTaken(f"the claim of pool member {member.id} got no answer and was not seen applied")

    async def _settle(self, member_id: str, mark: str, delay: float = 0.0) -> None:
        """A claim whose write got no answer, which its create did without: if it was applied,
        the member is claimed by no create, and goes (its ConfigMap on the condition of the
        version that carries the mark, then the rest); if it is still a member, it is written
        once more (a new version), so that the claim's write can no longer land, and it serves
        creates again."""
        backend = self.backend
        assert backend.client is not None
        path = CONFIGMAP.item(backend.namespace, naming.configmap_name(member_id))
        try:
            await self._settle_once(member_id, mark, path, delay)
        finally:
            self._doubtful.discard(member_id)

    async def _settle_once(self, member_id: str, mark: str, path: str, delay: float) -> None:
        backend = self.backend
        assert backend.client is not None
        for _ in range(SETTLE_TRIES):
            await asyncio.sleep(delay or SETTLE_DELAY)
            try:
                current = await backend.client.get(path, resource="configmaps")
            except BackendError:
                continue  # the API server is still silent: look again
            if current is None:
                return  # removed: nothing is left of the claim
            if claim_outcome(current, mark) != OURS:
                if pool_of(current) is None:
                    return  # claimed by another create: its agent
                # Still a member: a write of another mark gives it a new version, so that the
                # claim's write, should it still be under way, is refused (409) and never lands.
                try:
                    await backend.client.request(
                        "PATCH", path, body={"metadata": {"resourceVersion": current["metadata"]["resourceVersion"],
                                                          "annotations": {CLAIM_ANNOTATION: f"fenced-{mark}"}}},
                        content_type="application/merge-patch+json",
                        params={"fieldManager": backend.k8s.field_manager}, verb="patch", resource="configmaps")
                except NotFound:
                    return
                except BackendError:
                    continue  # changed meanwhile (the claim landed?) or silent: look again
                return
            log.warning("the claim of pool member %s was applied after its create went on without it; removing it",
                        member_id)
            backend.reconciler.forget(member_id)
            try:
                if not await backend.delete_object(CONFIGMAP, naming.configmap_name(member_id),
                                                   seen=current["metadata"]["resourceVersion"]):
                    return  # gone meanwhile: nothing is left of the claim
                for kind, name in model.delete_targets(member_id, purge=True):
                    if kind is not CONFIGMAP:
                        await backend.delete_object(kind, name)
            except (Conflict, NotFound):
                return  # changed meanwhile: someone else's now
            except BackendError as exc:
                log.warning("removing the unclaimed agent %s failed: %s", member_id, exc.message)
                continue
            return

    async def _bind(self, agent_id: str, env: dict[str, str], token: str) -> bool:
        """Post ``env`` to the member's launcher with its token; False when it did not take it."""
        backend = self.backend
        url = binding_url(backend.cached(POD, naming.pod_name(agent_id)), BIND_PATH)
        if url is None or backend.http is None:
            log.warning("pool member %s cannot be bound (no pod IP); it starts bound once its token is gone", agent_id)
            return False
        try:
            async with backend.http.post(url, json={"env": env}, headers={"Authorization": f"Bearer {token}"},
                                         timeout=aiohttp.ClientTimeout(total=BIND_TIMEOUT)) as response:
                if response.status == 200:
                    return True
                log.warning("pool member %s refused its binding (%d); it starts bound once its token is gone", agent_id,
                            response.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("pool member %s did not take its binding (%s); it starts bound once its token is gone", agent_id,
                        type(exc).__name__)
        return False

    async def _drop_token(self, agent_id: str) -> None:
        """The token binds nothing any more (the listener closed): its Secret goes. A launcher
        that did not take its binding waits until then, so a failed delete is tried again."""
        for attempt in range(DROP_TRIES):
            try:
                await self.backend.delete_object(SECRET, binding_secret_name(agent_id))
                return
            except BackendError as exc:  # owned by the ConfigMap: it goes with the agent at the latest
                log.warning("the binding Secret of %s was not deleted (%s)%s", agent_id, exc.message,
                            "; trying again" if attempt + 1 < DROP_TRIES else "")
            await asyncio.sleep(SETTLE_DELAY)

    # --- keeping the pools full ---------------------------------------------------------------

    async def _keep(self) -> None:
        while True:
            try:
                if self.backend.current():  # a partial view would make members that exist
                    await self._refill()
            except asyncio.CancelledError:
                raise
            except BackendError as exc:  # the API server does not answer: the next check tries again
                log.warning("refilling the pools: %s", exc.message)
            except Exception:  # a bug here must not end the pools for good
                log.exception("refilling the pools failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_INTERVAL)
            self._wake.clear()

    async def _refill(self) -> None:
        """Make the members missing and remove those of no use, if this replica holds the lease."""
        by_pool: dict[str, list[Member]] = {}
        members = self.members()
        # A claimed member is no member once the cache shows its claim: its reservation ends.
        self._reserved &= {m.id for m in members}
        for member in members:
            if member.id not in self._reserved and member.id not in self._removing:
                by_pool.setdefault(member.pool, []).append(member)
        removals: list[str] = []
        makes: list[ConfiguredPool] = []
        for name in set(by_pool) | set(self.pools):
            pool = self.pools.get(name)
            pool_members = by_pool.get(name, [])
            listed = {m.id for m in pool_members}
            making = sum(1 for i, p in self._making.items() if p == name and i not in listed)
            refill = refill_plan(pool.size if pool else 0, pool.shape if pool else "", pool_members)
            removals += refill.remove
            if pool is not None and name not in self._refused:
                makes += [pool] * (refill.make - making)
        if asyncio.get_running_loop().time() - self._last_claim < 0.9 * REFILL_AFTER_CLAIM:  # the wake may come early
            makes = []  # claims are under way: they go first (the wake after the last one refills)
        if not (removals or makes):
            return
        # The versions the removals were decided on, before the lease's round trip lets the
        # cache move on (a member claimed meanwhile is no member to remove).
        versions = {member_id: self._seen_version(member_id) for member_id in removals}
        if not await self.lease.held():
            return  # another replica does it
        for member_id in removals:
            self._start(self._remove(member_id, versions[member_id]), f"remove pool member {member_id}")
        for pool in makes:
            self._start(self._make(pool), f"make a member of pool {pool.name}")

    def _start(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    async def _make(self, pool: ConfiguredPool) -> None:
        """Make one member: its ConfigMap (the claim on its id), its token's Secret, then its
        other objects; what was made of a member that failed is removed."""
        backend = self.backend
        assert backend.client is not None
        agent_id = naming.generate_agent_id()
        spec = dataclasses.replace(member_spec(backend.settings, pool.pool, agent_id), pool=pool.name)
        problem = missing_key(backend.settings, spec)
        if problem is not None:  # no create of its shape is let through: a member would serve none
            if pool.name not in self._refused:
                log.error("pool %s keeps no members: %s", pool.name, problem)
                self._refused.add(pool.name)
            return
        self._making[agent_id] = pool.name
        try:
            create = plan(backend.render(spec), model.AgentObjects.of(agent_id, backend.cached), Purpose.CREATE)
            assert create.claim is not None
            backend.reconciler.note_applied(agent_id)
            configmap = await backend.client.request(
                "POST", CONFIGMAP.collection(backend.namespace), body=create.claim,
                params={"fieldManager": backend.k8s.field_manager}, verb="create", resource="configmaps")
            try:
                await backend.client.request(
                    "POST", SECRET.collection(backend.namespace),
                    body=binding_secret(backend.namespace, agent_id, secrets.token_urlsafe(32), configmap),
                    params={"fieldManager": backend.k8s.field_manager}, verb="create", resource="secrets")
                await carry_out(create, backend.apply)
            except BackendError:
                await backend.rollbacks.now(agent_id, delete_data=True)
                raise
            backend.reconciler.note_applied(agent_id)
        except BackendError as exc:  # a failure fails this member alone; the next check tries again
            log.warning("making a member of pool %s failed: %s", pool.name, exc.message)
        finally:
            self._making.pop(agent_id, None)

    def _seen_version(self, member_id: str) -> str | None:
        """The ``resourceVersion`` of the member's ConfigMap in the cache now (None when the
        cache holds none: a member half-made without it)."""
        configmap = self.backend.cached(CONFIGMAP, naming.configmap_name(member_id))
        return None if configmap is None else str(configmap["metadata"]["resourceVersion"])

    async def _remove(self, member_id: str, seen: str | None) -> None:
        """Remove a member unless it was claimed since it was seen as one: its ConfigMap goes
        first, on the condition of ``seen``, the version of it the removal was decided on (a
        claim changes it: the API server refuses the delete), then the rest. The version is
        the one seen, never the cache's at the time of the delete: by then the cache may show
        another replica's claim, and a delete on that version would remove its owner's agent.
        ``seen`` None is a member seen without its ConfigMap: one that has it now is not that
        member any more."""
        backend = self.backend
        assert backend.client is not None
        names = naming.object_names(member_id)
        if seen is None and backend.cached(CONFIGMAP, names["configmap"]) is not None:
            return
        self._removing.add(member_id)
        try:
            if seen is not None:
                try:
                    await backend.delete_object(CONFIGMAP, names["configmap"], seen=seen)
                except Conflict:
                    return  # claimed (or changed) since: not ours to remove
            backend.reconciler.forget(member_id)  # a missing ConfigMap of a member going is no drift
            for kind, name in model.delete_targets(member_id, purge=True):
                if kind is not CONFIGMAP:
                    await backend.delete_object(kind, name)
        except BackendError as exc:
            log.warning("removing pool member %s failed: %s", member_id, exc.message)
        finally:
            self._removing.discard(member_id)

    # --- metrics ----------------------------------------------------------------------------------

    def metrics(self) -> list[MetricSample]:
        """``agentproxy_pool_members{pool,state}`` and the claims this proxy served."""
        found = counts(self.members(), {name: pool.shape for name, pool in self.pools.items()})
        out = [MetricSample("pool_members", "Members of each warm pool by state (warming, ready, failed, stale).",
                            "gauge", float(n), (("pool", pool), ("state", state)))
               for (pool, state), n in sorted(found.items())]
        out.append(MetricSample("pool_claims_total", "Creates served by a warm pool member.", "counter",
                                float(self.claims)))
        return out

