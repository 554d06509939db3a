"""The progress of an agent's start: ordered steps, each with a time and a short message.

A start (a create, a resume, or a restart after a crash) is a :class:`StartProgress`: the
steps its mode defines (a :class:`StepPlan`) as they are reached, then one last step,
``ready``, or ``failed`` with the reason and message the agent's status shows (``stopped``
when it was suspended or deleted first). The mode tells what it knows now as *facts*: the
steps reached so far, with the time each was reached when the mode knows it (an object's
timestamp), which the record turns into steps exactly once, in order. Reaching a step
implies every step of a lower rank (a started container had its image and its node); steps
of one rank may come in either order (a claim bound before or after its pod was scheduled,
as its StorageClass decides).

A create served by a warm pool has steps of its own (:func:`claim_plan`): ``claimed``, ``bound``,
then the mode's from ``agentapi_answering`` on; the member's start, made before the create, is
not replayed as the agent's.

:class:`ProgressBook` keeps the current or last start of every agent and decides, from the
agent's state and facts, when a start begins and ends. Everything here is pure: the backend
feeds it, the HTTP layer reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..spec import AgentSpec
from .agent_state import AgentState, AgentStatus

START, RESUME, RESTART = "start", "resume", "restart"
"""What a progress record follows: a create, a resume, or a start again after the agent stopped
being ready on its own (a crash)."""

ANSWERING = "agentapi_answering"
"""The step at which a mode sees agentapi answer (the pod Ready, ``GET /status``): the steps
ranked below it are the agent's run (see :meth:`ProgressBook.observe`)."""

READY, FAILED, STOPPED = "ready", "failed", "stopped"
"""The last step of every start: ready, failed (with the agent's reason), or stopped (suspended
or deleted before it was ready)."""
ENDINGS = (READY, FAILED, STOPPED)

FIRST_MESSAGE = "first_message_delivered"
"""The step of the create request's first message in the conversation (only for agents with one)."""


@dataclass(frozen=True)
class Fact:
    """A step the mode knows to be reached: when (None: it does not know, now then) and what to say."""

    at: datetime | None = None
    message: str | None = None


Facts = Mapping[str, Fact]


@dataclass(frozen=True)
class StepPlan:
    """The steps of a mode's start in order: ``(name, rank, message)``, where the message is
    said when the mode gives none. A step implies every step of a lower rank."""

    mode: str
    steps: tuple[tuple[str, int, str], ...]

    def names(self) -> list[str]:
        """The step names, in order."""
        return [name for name, _, _ in self.steps]

    def applicable(self, has_first_message: bool) -> list[tuple[str, int, str]]:
        """The steps of an agent's start (the first message's only when it has one)."""
        return [s for s in self.steps if has_first_message or s[0] != FIRST_MESSAGE]


K8S_PLAN = StepPlan("k8s", (
    ("applied", 0, "the agent's objects are applied"),
    ("scheduled", 1, "the pod is placed on a node"),
    ("volume_bound", 1, "the volume claim is bound"),
    ("image_ready", 2, "the image is on the node"),
    ("container_started", 3, "the container started"),
    ("agentapi_answering", 4, "agentapi answers with its conversation back (the pod is Ready)"),
    (FIRST_MESSAGE, 5, "the first message is in the conversation"),
))
"""A start in k8s mode, from the objects and Events the watches see."""

LOCAL_PLAN = StepPlan("local", (
    ("process_started", 0, "agentapi was started"),
    ("agentapi_answering", 1, "agentapi answers GET /status"),
    ("restored", 2, "the saved conversation is back"),
    (FIRST_MESSAGE, 3, "the first message is in the conversation"),
))
"""A start in local mode, as the supervisor sees it."""

PLAIN_PLAN = StepPlan("plain", ((FIRST_MESSAGE, 0, "the first message is in the conversation"),))
"""A mode that tells no steps: only the first message and the end."""

CLAIMED, BOUND = "claimed", "bound"
"""The first steps of a create served by a warm pool: a ready member is claimed for the agent,
then its launcher takes the agent's binding (its variables, credentials and first message)."""


def claim_plan(plan: StepPlan) -> StepPlan:
    """The steps of a create served by a warm pool in ``plan``'s mode: ``claimed`` and ``bound``,
    then ``plan``'s steps from :data:`ANSWERING` on. The member's own start (its pod, its
    process) happened before the create and is no step of the agent's."""
    ranks = [rank for name, rank, _ in plan.steps if name == ANSWERING]
    first = ranks[0] if ranks else min((rank for _, rank, _ in plan.steps), default=0)
    later = tuple((name, rank - first + 2, message) for name, rank, message in plan.steps if rank >= first)
    return StepPlan(plan.mode, ((CLAIMED, 0, "a ready member of a warm pool is claimed for the agent"),
                                (BOUND, 1, "the member's launcher took the agent's binding"), *later))


def utc(at: datetime | None = None) -> datetime:
    """``at`` (now when None) as an aware UTC time."""
    at = at or datetime.now(UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def timestamp(at: datetime) -> str:
    """RFC 3339 with milliseconds and ``Z``."""
    return utc(at).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Step:
    """One reached step: its name, when, a short message, and for ``failed`` and ``stopped``
    the agent's reason."""

    name: str
    at: datetime
    message: str
    reason: str | None = None
    seconds: float = 0.0
    """Time since the step before it (since the start began, for the first)."""

    def to_json(self) -> dict[str, Any]:
        """The step as the API shows it."""
        data: dict[str, Any] = {"step": self.name, "at": timestamp(self.at), "message": self.message,
                                "seconds": round(self.seconds, 3)}
        if self.reason is not None:
            data["reason"] = self.reason
        return data


class StartProgress:
    """The steps of one start of one agent, appended once each, in order, until its end."""

    def __init__(self, agent_id: str, kind: str, plan: StepPlan, begun: datetime, has_first_message: bool) -> None:
        self.agent_id = agent_id
        self.kind = kind
        self.plan = plan
        self.begun = utc(begun)
        self.steps: list[Step] = []
        self._plan = plan.applicable(has_first_message)
        self._reached: set[str] = set()
        self.seen_running = False
        """Whether a state of the agent after the start began was seen (one not suspended)."""
        self.timed = True
        """Whether the steps are told to the book's listeners (see :meth:`ProgressBook.begin`)."""

    @property
    def ended(self) -> bool:
        """True once the last step (ready, failed or stopped) is in."""
        return bool(self.steps) and self.steps[-1].name in ENDINGS

    @property
    def pending(self) -> list[str]:
        """The planned steps not reached yet."""
        return [name for name, _, _ in self._plan if name not in self._reached]

    def observe(self, facts: Facts, now: datetime | None = None) -> list[Step]:
        """Add the steps ``facts`` show reached (and the lower-ranked steps they imply) that are
        not in yet; the steps added, in order."""
        if self.ended:
            return []
        now = utc(now)
        reached = {name: rank for name, rank, _ in self._plan if name in facts}
        if not reached:
            return []
        top = max(reached.values())
        known = [(rank, utc(at)) for name, rank in reached.items() if (at := facts[name].at) is not None]
        new: list[tuple[int, datetime, int, str, str]] = []
        for position, (name, rank, default) in enumerate(self._plan):
            if name in self._reached or (name not in facts and rank >= top):
                continue
            fact = facts.get(name)
            if fact is not None and fact.at is not None:
                when = utc(fact.at)
            else:
                # Implied, or seen without a time of its own: reached by the time the first step
                # that implies it was, if that one has a time; else now, when it was seen.
                when = min((t for r, t in known if r > rank), default=now)
            new.append((rank, when, position, name, (fact.message if fact else None) or default))
        new.sort(key=lambda n: (n[0], n[1], n[2]))
        return [self._append(name, at, message) for _, at, _, name, message in new]

    def finish(self, name: str, message: str, reason: str | None = None, now: datetime | None = None) -> Step | None:
        """End the start with ``name`` (ready, failed or stopped); None when it has ended already."""
        if self.ended:
            return None
        return self._append(name, utc(now), message, reason)

    def _append(self, name: str, at: datetime, message: str, reason: str | None = None) -> Step:
        # Times of objects have a second's resolution: a step is never before the one before it.
        previous = self.steps[-1].at if self.steps else self.begun
        at = max(at, previous)
        step = Step(name, at, message, reason, (at - previous).total_seconds())
        self.steps.append(step)
        self._reached.add(name)
        return step

    def to_json(self) -> dict[str, Any]:
        """The whole record as the API shows it."""
        return {"id": self.agent_id, "kind": self.kind, "begun_at": timestamp(self.begun),
                "steps": [s.to_json() for s in self.steps], "ended": self.ended}


StepListener = Callable[[StartProgress, Step], None]
"""Told of every step added to any record (the metrics time them)."""

_STARTING = (AgentStatus.PENDING, AgentStatus.STARTING)


class ProgressBook:
    """The current or last start of every agent, fed with its states and facts.

    A record begins with :meth:`begin` (a create or resume of this proxy), or when an agent is
    seen starting without one under way (created or resumed by another proxy, a restart after a
    crash, a proxy that restarted meanwhile). It ends with ``ready`` once the agent is ready and
    its first message, if it has one, is delivered (or overdue: ``ready`` then says so), with
    ``failed`` when the agent fails, and with ``stopped`` when it is suspended, stopped or
    deleted. A state on the way there (``stopping``) ends nothing: a watch may show a new
    agent's pod before its StatefulSet, which reads as a pod shutting down; a delete ends the
    start when the agent is gone, a suspend as soon as the agent is marked suspended.

    A ready agent seen starting again restarts only when its run ended: when a step of its
    start below :data:`ANSWERING` is no longer shown as it was at the ready (the container or
    process ended, the pod was replaced), or when it was seen stopped or failed meanwhile. One
    whose run goes on only stopped answering for a while (a readiness probe that timed out):
    no start begins. ``changed(agent_id)`` is called whenever a record of the agent gains a
    step or is replaced.
    """

    def __init__(self, plan: StepPlan, changed: Callable[[str], None] = lambda _: None) -> None:
        self.plan = plan
        self.changed = changed
        self.listeners: list[StepListener] = []
        self.claim_plan = claim_plan(plan)
        """The steps of a create served by a warm pool (see :func:`claim_plan`)."""
        self._records: dict[str, StartProgress] = {}
        self._suspended: set[str] = set()
        self._runs: dict[str, dict[str, Fact]] = {}
        """The run of each agent whose last start ended ready: its facts below :data:`ANSWERING`."""
        ranks = {name: rank for name, rank, _ in plan.steps}
        self._run_rank = ranks.get(ANSWERING)
        self._ranks = ranks

    def get(self, agent_id: str) -> StartProgress | None:
        """The agent's current start, or its last one."""
        return self._records.get(agent_id)

    def begin(self, spec: AgentSpec, kind: str, now: datetime | None = None, *, timed: bool = True,
              warm: bool | None = None) -> StartProgress:
        """A start of the agent of ``spec`` begins now (one under way is replaced); ``timed``: its
        steps are told to the listeners (not for a start this proxy only came upon); ``warm``: a
        create served by a warm pool, whose steps are :attr:`claim_plan`'s (by default a first
        start of an agent made from a pool's member)."""
        previous = self._records.get(spec.id)
        if previous is not None and not previous.ended:
            self._tell(previous, previous.finish(STOPPED, f"replaced by a {kind}", "Replaced", now))
        if warm is None:
            warm = kind == START and spec.pool is not None
        record = StartProgress(spec.id, kind, self.claim_plan if warm else self.plan, utc(now), bool(spec.message))
        record.timed = timed
        self._records[spec.id] = record
        self._runs.pop(spec.id, None)
        self.changed(spec.id)
        return record

    def end(self, agent_id: str, name: str, message: str, reason: str | None = None,
            now: datetime | None = None) -> None:
        """End the agent's start under way (a create or resume that did not go through)."""
        record = self._records.get(agent_id)
        if record is not None and not record.ended:
            self._tell(record, record.finish(name, message, reason, now))
            self.changed(agent_id)

    def observe(self, state: AgentState, facts: Facts | Callable[[], Facts], *, first_message_overdue: bool = False,
                now: datetime | None = None) -> None:
        """The agent's latest state and the facts of its mode (or what tells them, asked only
        while a start is under way)."""
        record = self._records.get(state.id)
        suspended_before = state.id in self._suspended
        if state.suspended or state.status is AgentStatus.SUSPENDED:
            self._suspended.add(state.id)
        else:
            self._suspended.discard(state.id)
        if state.suspended or state.status not in (AgentStatus.READY, *_STARTING):
            self._runs.pop(state.id, None)  # stopped or failed: whatever starts next is a new run
        if record is None or record.ended:
            if state.status is AgentStatus.STARTING and not state.suspended and state.id in self._runs:
                if callable(facts):
                    facts = facts()
                if self._run_of(facts) == self._runs[state.id]:
                    return  # ready before, its run goes on: it stopped answering for a while
            if state.status not in _STARTING or state.suspended:
                if record is None and state.status is AgentStatus.READY:
                    # First seen ready (a proxy that started meanwhile): what its facts still show.
                    record = self.begin(state.spec, START, state.created_at, timed=False)
                else:
                    return
            else:
                # Created or resumed by another proxy, or before this one started: shown, but
                # timed only by whoever carried it out. A restart after a crash is timed by each.
                kind = RESUME if suspended_before else START if record is None else RESTART
                record = self.begin(state.spec, kind, state.created_at if record is None and kind == START else now,
                                    timed=kind == RESTART)
        if callable(facts):
            facts = facts()
        if not (state.suspended or state.status is AgentStatus.SUSPENDED):
            record.seen_running = True
        added = record.observe(facts, now)
        end = self._end_of(record, state, first_message_overdue, now)
        if end is not None:
            added.append(end)
            if end.name == READY and self._run_rank is not None:
                self._runs[state.id] = self._run_of(facts)
        for step in added:
            self._tell(record, step)
        if added:
            self.changed(state.id)

    def _end_of(self, record: StartProgress, state: AgentState, overdue: bool, now: datetime | None) -> Step | None:
        if state.status is AgentStatus.FAILED:
            return record.finish(FAILED, state.message or state.reason or "the agent failed", state.reason, now)
        if record.kind == RESUME and not record.seen_running:
            return None  # the state from before the resume, seen once more before its own
        if state.suspended or state.status in (AgentStatus.STOPPED, AgentStatus.SUSPENDED):
            return record.finish(STOPPED, state.message or "the agent was stopped before it was ready",
                                 state.reason, now)
        if state.status is AgentStatus.READY:
            if FIRST_MESSAGE in record.pending and not overdue:
                return None
            message = state.message if overdue and state.message else "the agent is ready"
            return record.finish(READY, message, state.reason if overdue else None, now)
        return None

    def _run_of(self, facts: Facts) -> dict[str, Fact]:
        """The facts of the agent's run: those ranked below :data:`ANSWERING`."""
        assert self._run_rank is not None  # only kept for plans that have the step
        return {name: fact for name, fact in facts.items() if self._ranks.get(name, self._run_rank) < self._run_rank}

    def gone(self, agent_id: str, reason: str = "Deleted", now: datetime | None = None) -> None:
        """The agent is gone: a start under way ends ``stopped``; its record is forgotten."""
        record = self._records.pop(agent_id, None)
        self._suspended.discard(agent_id)
        self._runs.pop(agent_id, None)
        if record is not None and not record.ended:
            self._tell(record, record.finish(STOPPED, "the agent was deleted", reason, now))
            self.changed(agent_id)

    def drop(self, agent_id: str) -> None:
        """Forget the agent's start without a step: it was never this proxy's to carry out (a
        pool member another replica claimed first; its start is seen as any other replica's)."""
        if self._records.pop(agent_id, None) is not None:
            self.changed(agent_id)

    def records(self) -> Iterable[StartProgress]:
        """Every agent's current or last start."""
        return self._records.values()

    def _tell(self, record: StartProgress, step: Step | None) -> None:
        if step is None or not record.timed:
            return
        for listener in self.listeners:
            listener(record, step)
