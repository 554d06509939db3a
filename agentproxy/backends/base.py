"""The one interface both backends implement.

The HTTP API, the CLI and the tests talk to :class:`Backend`; nothing above it
knows whether agents are local processes or Kubernetes objects.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..pools import Decision
from ..spec import AgentSpec
from .agent_state import AgentState, AgentStatus, StatusEvent, visible
from .conversation import FIRST_MESSAGE_PENDING
from .errors import (  # noqa: F401  (re-exported: callers import the errors from here)
    BackendError,
    Conflict,
    Forbidden,
    NotFound,
    Rejected,
    SessionTaken,
    TooMany,
    Unavailable,
)
from .eventlog import EventLog
from .events import EventHub
from .index import ANY_OWNER
from .lifecycle import ChangeWaiters, LifecycleEvent, Listener, ResumeTimer
from .limits import CreateLimits, CreateQueue
from .ownership import check_session
from .pooling import MemberTaken, PoolKeeper
from .progress import FAILED, PLAIN_PLAN, RESUME, START, Facts, ProgressBook, StepPlan
from .suspension import API, AgentActivity, Suspension

log = logging.getLogger("agentproxy.backends")


@dataclass(frozen=True)
class MetricSample:
    """One value a backend reports for ``/metrics`` (see :meth:`Backend.metrics`)."""

    name: str  # without the agentproxy_ prefix, e.g. "k8s_drift_repairs_total"
    help: str
    type: str  # "counter" or "gauge"
    value: float
    labels: tuple[tuple[str, str], ...] = ()


CLAIM_ATTEMPTS = 3
"""Members a create tries to claim (another replica may claim each first) before it goes cold."""


class _ClaimFailed(Exception):
    """A pool member could not be bound (it ended, or did not answer): the create goes cold."""


def check_same_spec(existing: AgentSpec, requested: AgentSpec) -> None:
    """Idempotency by spec fingerprint: a create of an existing id is a repeat when the specs are
    equal, else a :class:`Conflict` (agent ids are unique across sessions, as object names are
    in a namespace)."""
    if existing.pool is not None and requested.pool is None:
        # A warm agent's spec names the pool it came from; a repeat of its create does not.
        requested = dataclasses.replace(requested, pool=existing.pool)
    if existing.fingerprint() != requested.fingerprint():
        if existing.session != requested.session:
            raise Conflict(f"agent id {requested.id!r} is already used in another session", field="id")
        raise different_spec(requested.id)


def different_spec(agent_id: str) -> Conflict:
    """The conflict of a create whose spec differs from the existing agent's."""
    return Conflict(f"agent {agent_id!r} already exists with a different spec", field="id")


def not_found(session: str, agent_id: str) -> NotFound:
    """The error of an agent that does not exist in ``session`` (an agent of another session does not)."""
    return NotFound(f"agent {agent_id!r} does not exist in session {session!r}")


def _list_order(state: AgentState) -> tuple[datetime, str]:
    return state.created_at, state.id


class AgentLocks:
    """One lock per agent id, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, list[Any]] = {}  # agent id -> [lock, holders and waiters]

    @contextlib.asynccontextmanager
    async def hold(self, agent_id: str) -> AsyncIterator[None]:
        """Hold the agent's lock for the body of an ``async with``."""
        entry = self._entries.setdefault(agent_id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[agent_id]

    def held(self, agent_id: str) -> bool:
        """True while a create or delete of the agent is under way."""
        entry = self._entries.get(agent_id)
        return entry is not None and entry[0].locked()


class Backend(abc.ABC):
    """Create, inspect, stream and delete agents.

    The rules every mode follows are kept here, once: idempotency by spec fingerprint
    (:func:`check_same_spec`), session scoping (an agent of another session does not
    exist), list filters and order (creation time, then id), one event per visible change
    (:meth:`publish`), one lock per agent around creates, deletes, suspends and resumes,
    suspends and resumes that are no-ops when already done (a create of a suspended agent
    resumes it), and the time from a resume to ready. A mode implements only its primitives:
    :meth:`_state` and :meth:`_states` (what it knows now), :meth:`_create_new`,
    :meth:`_create_again`, :meth:`_delete`, :meth:`_suspend`, :meth:`_resume`, :meth:`_logs`,
    :meth:`_record_activity` and :meth:`_activity` (its I/O), and may check that it can write
    at all in :meth:`_prepare`. The limits of
    :class:`~.limits.CreateLimits` (agents per session and owner, creates at once) are
    enforced here too, before anything is made.
    """

    mode: str = "abstract"
    progress_plan: StepPlan = PLAIN_PLAN
    """The steps of a start in this mode (see :mod:`.progress`)."""

    resource_version_ids: bool = False
    """Whether event ids are resourceVersions shared by replicas, rather than this process's
    sequence (see :mod:`.eventlog`)."""

    def __init__(self, limits: CreateLimits | None = None) -> None:
        self.hub: EventHub[StatusEvent] = EventHub()
        """Every subscriber of :meth:`events`."""
        self.event_log: EventLog[StatusEvent] = EventLog(epoch=None if self.resource_version_ids else "")
        """The recent events, for clients that reconnect (``Last-Event-ID``)."""
        self.event_hint: int | None = None
        """The resourceVersion of the object change being handled, while one is (k8s mode)."""
        self.locks = AgentLocks()
        """Held around each create, delete, suspend and resume of one agent."""
        self.lifecycle_listeners: list[Listener] = []
        """Told of every suspend and resume this backend carries out (the metrics count them)."""
        self._published: dict[str, AgentState] = {}
        self._resumes = ResumeTimer(self.lifecycle_listeners)
        self._changes = ChangeWaiters()
        self._progress_changes = ChangeWaiters()
        self.progress = ProgressBook(self.progress_plan, self._progress_changes.changed)
        """The current or last start of every agent, step by step."""
        self.progress_paused = False
        """While True (a mode loading what exists), states move no start on: a partial view (a
        pod seen before its StatefulSet) would end one wrongly. See :meth:`follow_progress`."""
        self._creating: dict[str, AgentSpec] = {}
        self.pools: PoolKeeper | None = None
        """The mode's warm pools, when it keeps any (see :mod:`.pooling`)."""
        self.last_decision: Decision | None = None
        """The pool decision of the latest create that named no id (for the log and tests)."""
        self.claim_listeners: list[Callable[[str, str], Awaitable[None]]] = []
        """Told ``(requested id, member id)`` the moment a create's claim of a pool member is
        written: from then on the create is that agent (the quota ledger moves its reservation)."""
        self._claiming: dict[str, str] = {}
        """The id each create that is claiming a member was asked with, by the member's id."""
        self.set_limits(limits or CreateLimits())

    def set_limits(self, limits: CreateLimits) -> None:
        """Enforce ``limits`` on creates from now on (before any create is under way)."""
        self.limits = limits
        self._create_queue = CreateQueue(limits)

    async def start(self) -> None:  # noqa: B027 - a hook: a backend with nothing to connect keeps this one
        """Connect, load or rebuild state, start watches. Called once before use."""

    async def close(self) -> None:  # noqa: B027 - a hook: a backend with no background work keeps this one
        """Stop background work. Agents keep running."""

    async def healthy(self) -> bool:
        """True when the backend can do its work (the API server answers, ...)."""
        return True

    def runnable_types(self, commands: dict[str, Any]) -> list[str]:
        """The agent types of ``commands`` (``agents.commands``) this backend can start."""
        return list(commands)

    def metrics(self) -> list[MetricSample]:
        """What the mode counts (repairs, rollbacks, ...) for ``/metrics``."""
        return []

    async def readiness(self) -> str | None:
        """None when the backend can do its work, else why not (for ``/readyz``)."""
        return None if await self.healthy() else f"the {self.mode} backend is not ready"

    # --- the contract ------------------------------------------------------------------------

    async def create(self, spec: AgentSpec, *, any_session: bool = False, names_id: bool = True) -> AgentState:
        """Start an agent. Idempotent for an equal spec; :class:`Conflict` for a different one;
        :class:`SessionTaken` in a session of another owner (unless ``any_session``: admins, shared
        sessions, the operator's own commands); :class:`TooMany` beyond a limit. A create whose
        request named no id (``names_id`` False) and has a pool's shape claims a ready member of
        that pool (see :mod:`agentproxy.pools`): the agent gets the member's id."""
        async with self._create_queue.slot():
            prepared = await self._prepare(spec)
            for _ in range(CLAIM_ATTEMPTS if not names_id and self.pools is not None else 0):
                assert self.pools is not None
                decision, member = self.pools.take(spec)
                self.last_decision = decision
                if member is None:
                    break
                self._claiming[member.id] = spec.id
                try:
                    return await self._create_locked(dataclasses.replace(spec, id=member.id), prepared,
                                                     any_session, member)
                except _ClaimFailed as failed:
                    if isinstance(failed.__cause__, MemberTaken):
                        continue  # another replica's claim came first: another member, or cold
                    log.warning("claiming pool member %s failed (%s); the agent is created cold", member.id,
                                failed.__cause__ or failed)
                    break
                finally:
                    self._claiming.pop(member.id, None)
            return await self._create_locked(spec, prepared, any_session, None)

    async def _create_locked(self, spec: AgentSpec, prepared: Any, any_session: bool, member: Any) -> AgentState:
        claiming = False
        try:
            async with self.locks.hold(spec.id):
                existing = self._state(spec.id)
                # Whose the session is comes first: a refusal must not tell another owner whether
                # the session is full or what it holds. (A repeat of one's own agent is one's own.)
                if not any_session and (existing is None or existing.spec.owner != spec.owner):
                    check_session(spec, self._listed(spec.session, ANY_OWNER), self._creating.values())
                if existing is None:
                    # An agent being created may be known already: count each id once.
                    others = {s.id: s for s in self._peers(spec)}
                    others.update(self._creating)
                    self.limits.check_room(spec, others.values())
                    self._creating[spec.id] = spec
                    self.progress.begin(spec, START, warm=member is not None)
                    claiming = member is not None
                    try:
                        if member is not None:
                            return await self._claim_member(spec, member, prepared)
                        return await self._create_new(spec, prepared)
                    except BaseException as exc:
                        if isinstance(exc, MemberTaken):
                            # Another replica's claim: its start, not ours. What this replica saw
                            # of that agent meanwhile moved the record just dropped, so its start
                            # is followed again from its state now, as any other replica's.
                            self.progress.drop(spec.id)
                            self._observe_progress_now(spec.id)
                        elif self._state(spec.id) is None:
                            self.progress.gone(spec.id, "CreateFailed")
                        raise
                    finally:
                        self._creating.pop(spec.id, None)
                check_same_spec(existing.spec, spec)
                if existing.suspended:  # created again with the same spec: it resumes
                    return await self._resume_locked(existing, API)
                return await self._create_again(existing, prepared)
        except (BackendError, OSError) as exc:
            if member is None or self.pools is None:
                raise
            if not claiming:  # refused before the claim began: the member is as it was
                self.pools.give_back(member)
                raise
            self.pools.discard(member)
            if isinstance(exc, BackendError) and not isinstance(exc, Unavailable):
                raise
            raise _ClaimFailed() from exc
        except BaseException:
            if member is not None and self.pools is not None:
                (self.pools.discard if claiming else self.pools.give_back)(member)
            raise

    async def get(self, session: str, agent_id: str) -> AgentState:
        """The agent's current state, or :class:`NotFound` (also when in another session)."""
        state = self.peek(session, agent_id)
        if state is None:
            raise not_found(session, agent_id)
        return state

    def peek(self, session: str, agent_id: str) -> AgentState | None:
        """The agent's state as the backend knows it now, without waiting for anything (None when it
        does not exist or is in another session): what a proxied request needs, a dictionary read."""
        state = self._state(agent_id)
        return state if state is not None and state.session == session else None

    async def list(self, session: str | None = None, status: AgentStatus | None = None,
                   owner: Any = ANY_OWNER) -> list[AgentState]:
        """Agents, optionally of one session, status or owner (None: made without keys), ordered
        by creation time (then id)."""
        states = self._in_order(session, owner)
        if status is not None:
            states = [s for s in states if s.shown_status == status]
        return states

    async def delete(self, session: str, agent_id: str, purge: bool = False) -> AgentState:
        """Stop and remove an agent; ``purge`` also deletes its data. :class:`NotFound` if absent."""
        await self._prepare(None)
        await self.get(session, agent_id)  # an unknown agent does not wait for a lock
        async with self.locks.hold(agent_id):
            state = await self.get(session, agent_id)  # a concurrent delete may have won
            self._resumes.end(agent_id)
            return await self._delete(state, purge)

    async def suspend(self, session: str, agent_id: str, cause: str = API,
                      guard: Callable[[AgentState], bool] | None = None) -> AgentState:
        """Save the agent's state and stop it, keeping its data; a no-op for a suspended agent.
        ``guard`` is asked again under the agent's lock (and by a mode that retries): the
        agent is left as it is unless ``guard(state)`` still holds."""
        await self._prepare(None)
        await self.get(session, agent_id)
        async with self.locks.hold(agent_id):
            state = await self.get(session, agent_id)
            if state.suspended or (guard is not None and not guard(state)):
                return state
            self._resumes.end(agent_id)
            state, done = await self._suspend(state, Suspension.now(cause), guard)
            if done:
                log.info("agent %s/%s suspended (%s)", session, agent_id, cause)
                self._resumes.tell(LifecycleEvent("suspended", cause))
            return state

    async def share(self, session: str, agent_id: str, group: str | None) -> AgentState:
        """Share the agent with ``group`` (None: with no group) while it runs or sleeps as it is:
        its spec's ``group`` changes, nothing restarts."""
        await self._prepare(None)
        await self.get(session, agent_id)
        async with self.locks.hold(agent_id):
            state = await self.get(session, agent_id)
            if state.spec.group == group:
                return state
            shared = await self._share(state, dataclasses.replace(state.spec, group=group))
            log.info("agent %s/%s shared with %s", session, agent_id, group or "no group")
            self.publish(shared)
            return shared

    async def resume(self, session: str, agent_id: str, cause: str = API) -> AgentState:
        """Start a suspended agent again (with its data and conversation); a no-op for an
        agent that is not suspended."""
        await self._prepare(None)
        await self.get(session, agent_id)
        async with self.locks.hold(agent_id):
            state = await self.get(session, agent_id)
            if not state.suspended:
                return state
            return await self._resume_locked(state, cause)

    async def _resume_locked(self, state: AgentState, cause: str) -> AgentState:
        # Begun first: a mode may announce the agent ready before _resume returns.
        self._resumes.begin(state.id, cause)
        self.progress.begin(state.spec, RESUME)
        try:
            resumed, done = await self._resume(state)
        except BaseException as exc:
            self._resumes.end(state.id)
            self.progress.end(state.id, FAILED, str(exc) or "the resume failed", "ResumeFailed")
            raise
        if not done:
            self._resumes.end(state.id)
            self.publish(resumed)  # another proxy resumed it: the states to come tell its steps
            return resumed
        log.info("agent %s/%s resumed (%s)", state.session, state.id, cause)
        self._resumes.done(state.id, ready=resumed.status is AgentStatus.READY)
        return resumed

    def resuming(self, agent_id: str) -> bool:
        """True from a resume by this backend until the agent is ready (or fails, or is
        suspended or deleted again)."""
        return agent_id in self._resumes

    async def wait_ready(self, session: str, agent_id: str, timeout: float) -> AgentState:
        """The agent once it is ready (or failed), or as it is after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            state = await self.get(session, agent_id)
            remaining = deadline - loop.time()
            if (state.status is AgentStatus.READY and state.upstream) or state.status is AgentStatus.FAILED \
                    or remaining <= 0:
                return state
            await self._changes.next_change(agent_id, remaining)

    async def record_activity(self, agent_id: str, when: datetime, resolution: float = 0.0) -> None:
        """Note that the agent was in use at ``when`` (idle culling's clock), unless it is
        known to have been active since, or less than ``resolution`` seconds before."""
        state = self._state(agent_id)
        if state is None:
            return
        last = state.last_active
        if last is not None and (when <= last or (when - last).total_seconds() < resolution):
            return
        await self._record_activity(state, when)

    async def activity(self, state: AgentState) -> AgentActivity:
        """What the agent's own API says of its activity (nothing, when the mode cannot tell)."""
        return await self._activity(state)

    def answered(self, agent_id: str) -> None:  # noqa: B027 - a mode detecting no questions keeps this one
        """A message was sent to the agent through the proxy: a question it asked is answered
        (``waiting_input`` ends at once). Modes that detect no questions ignore it."""

    async def report_question(self, token: str, question: str | None) -> AgentState:
        """What a hook in an agent's pod reports, signed by the pod's ``token``: the agent asks
        ``question`` (None: no longer). Only k8s mode takes reports (local agents' hooks write a
        file the supervisor reads)."""
        raise NotFound("this proxy takes no waiting_input reports (k8s mode with k8s_mode.waiting_url only)")

    async def logs(self, session: str, agent_id: str, tail_lines: int = 100) -> str:
        """The last lines of the agent's output."""
        return await self._logs(await self.get(session, agent_id), tail_lines)

    def events(self) -> AsyncIterator[StatusEvent]:
        """Status changes from now on, for as long as the caller iterates."""
        return self.hub.subscribe()

    def listen(self, deliver: Callable[[StatusEvent], None], ended: Callable[[], None]) -> Callable[[], None]:
        """Status changes from now on handed to ``deliver`` as they happen, until the function
        returned is called (``ended`` when the backend closes); see :meth:`.events.EventHub.listen`."""
        return self.hub.listen(deliver, ended)

    # --- events --------------------------------------------------------------------------------

    async def next_progress(self, agent_id: str, timeout: float, unless: Callable[[], bool] | None = None) -> bool:
        """Return when the agent's start progress changes next (True), or after ``timeout``
        seconds (False); at once when ``unless()`` holds once the wait is registered (see
        :meth:`.lifecycle.ChangeWaiters.next_change`)."""
        return await self._progress_changes.next_change(agent_id, timeout, unless)

    def _start_facts(self, state: AgentState) -> Facts:
        """The steps of the agent's start reached now, as far as the mode knows (see :mod:`.progress`)."""
        return {}

    def _observe_progress(self, state: AgentState) -> None:
        self.progress.observe(state, lambda: self._start_facts(state),
                              first_message_overdue=state.reason == FIRST_MESSAGE_PENDING)

    def _observe_progress_now(self, agent_id: str) -> None:
        """Move the agent's start on from its state now (unless starts are paused)."""
        state = self._state(agent_id)
        if state is not None and not self.progress_paused:
            self._observe_progress(state)

    def follow_progress(self) -> None:
        """Let states move starts on again (after :attr:`progress_paused`), from every agent's
        state now."""
        self.progress_paused = False
        for state in list(self._states()):
            self._observe_progress(state)

    def publish(self, state: AgentState) -> None:
        """Announce the agent's state: ``added`` the first time, then ``modified`` when it
        changed visibly (see :func:`visible`), nothing otherwise. Every state, visible change
        or not, moves the agent's start progress on."""
        if not self.progress_paused:
            self._observe_progress(state)
        previous = self._published.get(state.id)
        if previous is not None and visible(previous) == visible(state):
            return
        self._published[state.id] = state
        if self._resumes:
            if state.status is AgentStatus.READY:
                self._resumes.ready(state.id)
            elif state.status is AgentStatus.FAILED or state.suspended:
                self._resumes.end(state.id)
        self._announce("added" if previous is None else "modified", state)
        self._changes.changed(state.id)

    def publish_gone(self, agent_id: str, final: AgentState | None = None) -> None:
        """Announce that the agent is gone (``deleted``), with ``final`` or its last announced state."""
        previous = self._published.pop(agent_id, None)
        self._resumes.end(agent_id)
        if previous is not None:
            # Only an agent once seen can be gone: a new agent's objects may be seen before the
            # one its state is read from (a watch of one kind ahead of another's); its create's
            # start goes on.
            self.progress.gone(agent_id)
        last = final if final is not None else previous
        if last is not None:
            self._announce("deleted", last)
        self._changes.changed(agent_id)

    def _announce(self, kind: str, state: AgentState) -> None:
        """Number the event, keep it for replay and send it to every subscriber."""
        position = self.event_log.next_position(self.event_hint)
        event = StatusEvent(kind, state, position, self.event_log.id_of(position))
        self.event_log.keep(position, event)
        self.hub.publish(event)

    # --- what each mode implements -------------------------------------------------------------

    async def _prepare(self, spec: AgentSpec | None) -> Any:
        """Checks before a create (``spec``) or delete (None) waits for the agent's lock: raise
        when the backend cannot write now. What it returns is handed to the create."""
        return None

    @abc.abstractmethod
    def _state(self, agent_id: str) -> AgentState | None:
        """The agent's state as the backend knows it now (any session), None when it does not exist."""

    @abc.abstractmethod
    def _states(self) -> Iterable[AgentState]:
        """Every agent's state as the backend knows it now."""

    def _specs(self) -> Iterable[AgentSpec]:
        """Every agent's spec (a mode may know them more cheaply than their states)."""
        return [s.spec for s in self._states()]

    def _listed(self, session: str | None, owner: Any) -> builtins.list[AgentState]:  # list: the method above
        """The states of the agents of ``session`` (every session when None) and ``owner``
        (every owner when :data:`~.index.ANY_OWNER`), in any order; a mode with an index by
        session answers without looking at the others."""
        return [s for s in self._states()
                if (session is None or s.session == session) and (owner is ANY_OWNER or s.spec.owner == owner)]

    def _in_order(self, session: str | None, owner: Any) -> builtins.list[AgentState]:
        """:meth:`_listed` in list order (creation time, then id); a mode that keeps the order
        of every agent answers a list of all without sorting it."""
        return sorted(self._listed(session, owner), key=_list_order)

    def _peers(self, spec: AgentSpec) -> Iterable[AgentSpec]:
        """At least the specs of the agents that share ``spec``'s session or owner (what the
        limits count); a mode with an index by session and owner answers with those alone."""
        return self._specs()

    @abc.abstractmethod
    async def _create_new(self, spec: AgentSpec, prepared: Any) -> AgentState:
        """Start an agent of an unused id (the agent's lock is held)."""

    async def _claim_member(self, spec: AgentSpec, member: Any, prepared: Any) -> AgentState:
        """Bind the pool ``member`` (taken by :attr:`pools`) to ``spec``, whose id is the
        member's (the agent's lock is held). A mode without pools never gets here."""
        raise Unavailable("this mode keeps no pools")

    async def claim_written(self, agent_id: str) -> None:
        """The claim of the member ``agent_id`` is written (a mode calls this at once): the
        create is that agent now; :attr:`claim_listeners` are told. Their failures are logged:
        the claim stands."""
        requested = self._claiming.get(agent_id)
        if requested is None or requested == agent_id:
            return
        for listener in self.claim_listeners:
            try:
                await listener(requested, agent_id)
            except Exception as exc:  # noqa: BLE001 - a reservation left under the old id expires by itself
                log.warning("a listener of the claim of %s failed: %s", agent_id, exc)

    async def _create_again(self, existing: AgentState, prepared: Any) -> AgentState:
        """A create of an agent that exists with an equal spec (the agent's lock is held)."""
        return existing

    @abc.abstractmethod
    async def _delete(self, state: AgentState, purge: bool) -> AgentState:
        """Stop and remove the agent of ``state`` (the agent's lock is held); its last state."""

    @abc.abstractmethod
    async def _suspend(self, state: AgentState, suspension: Suspension,
                       guard: Callable[[AgentState], bool] | None) -> tuple[AgentState, bool]:
        """Save and stop the agent of ``state``, which is not suspended (the agent's lock is held);
        its new state, and whether this call suspended it (False when it turned out to be
        suspended already, or ``guard`` no longer held)."""

    @abc.abstractmethod
    async def _resume(self, state: AgentState) -> tuple[AgentState, bool]:
        """Start the suspended agent of ``state`` again (the agent's lock is held); its new state,
        and whether this call resumed it (False when it turned out to be resumed already)."""

    async def _share(self, state: AgentState, spec: AgentSpec) -> AgentState:
        """Keep ``spec`` (the agent's, with another group) as the agent's (the agent's lock is held)."""
        raise Rejected(f"this backend ({self.mode} mode) cannot change an agent's sharing", field="group")

    @abc.abstractmethod
    async def _logs(self, state: AgentState, tail_lines: int) -> str:
        """The last lines of the output of the agent of ``state``."""

    async def _record_activity(self, state: AgentState, when: datetime) -> None:  # noqa: B027 - a mode keeping none
        """Keep ``when`` as the agent's last activity where every proxy sees it (a mode that
        keeps none ignores it)."""

    async def _activity(self, state: AgentState) -> AgentActivity:
        """agentapi's status and the time of its last message, as far as the mode can tell."""
        return AgentActivity()
