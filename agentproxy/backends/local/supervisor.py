"""One agent's life: start agentapi, wait until it answers, restart it when it dies
(see :mod:`.restarts`), enforce its memory limit, follow its conversation while it
is ready (see :mod:`.following`), suspend and wake it, stop it.

A supervisor owns its agent's port, process, log and state, and changes nothing
else: what it needs from its backend is :class:`SupervisorHost`, and the
backend changes a supervisor only through its methods.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
import signal
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ...launch import AgentLaunch, state_file
from ...restore import read_saved_messages
from ...settings.schema import SupervisionSettings
from ...spec import AgentSpec
from ...waiting import clear_question, read_question
from ..base import AgentState, AgentStatus, BackendError
from ..conversation import FIRST_MESSAGE_PENDING, ConversationFollower
from ..progress import FIRST_MESSAGE, Fact
from ..suspension import SUSPENDED_REASON, SUSPENDING_REASON, Suspension, utc_now
from .following import RunConversation
from .logs import AgentLog
from .ports import HOST, PortAllocator, port_is_free
from .process import (
    TAG_VARIABLE,
    AgentProcess,
    AgentStarter,
    Identity,
    ProcessTable,
    TreeSample,
    agent_environment,
    spawn_in_thread,
    stop_in_background,
    stop_tree,
)
from .report import (
    agent_details,
    agent_record,
    failure_text,
    human_bytes,
    last_active,
    log_tail,
    memory_limit_bytes,
    state_key,
)
from .restarts import Ended, RestartBackoff, exited, probe_interval

log = logging.getLogger(__name__)

WAITING_CHECK_INTERVAL = 0.25
"""Seconds between two reads of the question file while the screen keeps changing."""
WAITING_RECHECKS = (1.0, 2.5)
"""Seconds after a change of the screen at which the question file is read again."""
RESTORING_REASON = "Restoring"
"""A starting agent whose agentapi answers but has not loaded its saved conversation yet."""
ADOPTING_REASON = "Adopting"
"""An agent of the state file whose process a restarted proxy has not looked for yet."""
NOT_RESTORED_REASON = "ConversationNotRestored"
"""A ready agent whose agentapi did not load its saved conversation within ``start_timeout``."""


class SupervisorHost(Protocol):
    """What a supervisor needs from its backend."""

    timing: SupervisionSettings
    state_save_interval: float
    first_message_timeout: float
    ports: PortAllocator
    table: ProcessTable
    launches: asyncio.Semaphore
    """Bounds how many agents are being spawned at once (``launch_concurrency``)."""
    agent_nice: int
    """The CPU priority (nice value) agents run at (``local_mode.agent_nice``)."""
    starter: AgentStarter | None
    """The helper that starts agents in one scheduling group (None: the proxy starts them)."""

    def launch_of(self, spec: AgentSpec, port: int, work_dir: Path) -> AgentLaunch:
        """How to start the agent, programs as absolute paths (raises BackendError when a
        program is missing)."""

    def prepare(self, spec: AgentSpec, work_dir: Path) -> dict[str, str]:
        """Make the agent's data ready for its program (blocking I/O: call it in a thread);
        the variables it runs with beyond its launch's, secrets among them (never persisted)."""

    async def probe(self, port: int) -> bool:
        """True when agentapi answers ``GET /status`` on ``port``."""

    async def restored(self, port: int, saved: int) -> bool:
        """True when the agentapi on ``port`` holds the ``saved`` messages of its state file
        (see :mod:`agentproxy.restore`)."""

    def follower(self, port: int, first_message: str | None,
                 on_change: Callable[[str], None]) -> ConversationFollower | None:
        """A follower of the conversation of the agentapi on ``port`` (None once closing)."""

    def changed(self, supervisor: Supervisor) -> None:
        """Publish and persist the supervisor's new state."""


class Supervisor:
    """Supervises one agent: owns its port, process, log and a task that keeps it running."""

    def __init__(self, host: SupervisorHost, spec: AgentSpec, *, port: int | None, work_dir: Path,
                 log_file: Path, created_at: datetime, restarts: int = 0,
                 last_state: dict[str, Any] | None = None, tag: str | None = None,
                 active_at: datetime | None = None) -> None:
        self.host = host
        self.timing = host.timing
        self.spec = spec
        self.port = port
        self.work_dir = work_dir
        self.log = AgentLog(log_file)
        self.created_at = created_at
        self.restarts = restarts
        self.last_state = last_state
        self.tag = tag or secrets.token_hex(12)
        """Marks every process of this agent (see :data:`TAG_VARIABLE`)."""
        self.status = AgentStatus.PENDING
        self.reason: str | None = None
        self.message: str | None = None
        self.process: AgentProcess | None = None
        self.sample: TreeSample | None = None
        self.work_dir_bytes: int | None = None
        self.work_dir_complete = True
        self.disk_measured_at = float("-inf")
        self.memory_limit = memory_limit_bytes(spec.resources.memory_limit)
        self.suspension: Suspension | None = None
        """Why and when the agent was suspended, while it is."""
        self.active_at = active_at
        """The last proxied request to the agent that was recorded (idle culling's clock)."""
        self.ready_at: datetime | None = None
        """When the agent last became ready."""
        self.awaiting_adoption = False
        """True from :meth:`await_adoption` until :meth:`resume` (or a stop or suspension)."""
        self.adopting: Identity | None = None
        """The recorded process of an agent a restarted proxy is still adopting (see
        :meth:`await_adoption`); kept in the state file until it is adopted or started afresh."""
        self.start_facts: dict[str, Fact] = {}
        """The steps of the current run's start reached so far (see :data:`~..progress.LOCAL_PLAN`)."""
        self._task: asyncio.Task[None] | None = None
        self._over_limit = asyncio.Event()
        self.backoff = RestartBackoff(self.timing)
        self.conversation = RunConversation(
            save_interval=host.state_save_interval, first_message_timeout=host.first_message_timeout,
            save=self._save_now, delivered=self._first_message_delivered, overdue=self._first_message_overdue,
            status=self._screen_changed, name=f"conversation {spec.id}")
        self.question: str | None = None
        """What the agent asks its user while it waits (see :mod:`agentproxy.waiting`)."""
        self.start_kind = "cold"
        """``warm`` for an agent that was a pool member, else ``cold`` (see :mod:`agentproxy.pools`)."""
        self.pool: str | None = None
        """The pool it came from, when warm."""
        self._waiting_checked = float("-inf")
        self._waiting_recheck: asyncio.TimerHandle | None = None
        self._state_cache: tuple[tuple[Any, ...], AgentState] | None = None
        """The last state made and the key it was made from (see :meth:`state`)."""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def upstream(self) -> str | None:
        if self.status is AgentStatus.READY and self.port is not None:
            return f"http://{HOST}:{self.port}"
        return None

    # --- starting -----------------------------------------------------------------------------

    async def launch(self) -> None:
        """Start agentapi now (raises ``OSError`` or :class:`BackendError`: nothing runs then)."""
        assert self.port is not None
        launch = self.host.launch_of(self.spec, self.port, self.work_dir)
        argv = list(launch.argv)
        self.log.note(f"starting {shlex.join(argv)}")
        # Before every start: the program may have rewritten its files, or someone removed them.
        private = await asyncio.to_thread(self.host.prepare, self.spec, self.work_dir)
        env = agent_environment(launch.env, {**private, TAG_VARIABLE: self.tag})
        # A few at a time: a new program competes for the CPU until it is executing, and a
        # hundred at once would starve the proxy's own event loop for a second or more.
        async with self.host.launches:
            # Every start creates the work directory: someone may have removed it meanwhile.
            process = await spawn_in_thread(argv, env=env, cwd=self.work_dir, log_path=self.log.path, tag=self.tag,
                                            table=self.host.table, nice=self.host.agent_nice,
                                            starter=self.host.starter)
            self.process = process
            self.sample = None
            self.backoff.started()
            self.start_facts = {"process_started": Fact(utc_now(), f"agentapi started (pid {process.pid}, "
                                                                   f"port {self.port})")}
            self._set(AgentStatus.STARTING, "Starting", f"waiting for agentapi on port {self.port}")
            await process.settle()
        # Again once it runs: threads it started before the first time, and a kernel that
        # asked to retry, get it too.
        await process.deprioritize(self.host.agent_nice)

    def abandon(self) -> None:
        """The creation of this agent was called off after its process started: end it."""
        if self.process is not None:
            stop_in_background(self.process, tag=self.tag, table=self.host.table)
            self.process = None

    def await_adoption(self, identity: Identity | None, port: int | None) -> None:
        """An agent of the state file, running when the proxy stopped, whose process
        (``identity``, on ``port``) is looked for in the background: ``starting`` until then,
        and its requests wait or get 503 as for any starting agent."""
        self.awaiting_adoption, self.adopting, self.port = True, identity, port
        what = f"looking for its process (pid {identity.pid})" if identity is not None else "starting it again"
        self._set(AgentStatus.STARTING, ADOPTING_REASON, f"the proxy restarted; {what}")

    def resume(self, process: AgentProcess | None, port: int | None) -> None:
        """Supervise an agent of the state file again: take over its still running process
        (on ``port``), or start it afresh; a failed one stays failed."""
        self.awaiting_adoption, self.adopting = False, None
        if self.status is AgentStatus.FAILED:
            return
        self.port = port
        if process is not None:
            self.process = process
            self.backoff.started()
            self.start_facts = {"process_started": Fact(None, f"re-adopted pid {process.pid} after a restart "
                                                              f"of the proxy")}
            self.log.note(f"re-adopted pid {process.pid} after a restart of the proxy")
            self._set(AgentStatus.STARTING, "Adopted", f"re-adopted pid {process.pid}; checking agentapi")
        else:
            # It ended while no proxy watched it: that is a restart like any other.
            self.restarts += 1
            self.log.note("the agent was not running when the proxy started; restarting it")
        self.run()

    def take_over(self, process: AgentProcess, what: str, claim: Mapping[str, Fact] | None = None) -> None:
        """Supervise ``process``, a launcher that has just been bound (a claimed pool member),
        as this agent's run; later runs start afresh as every restart does. ``claim``: the
        claim's own steps (``claimed``, ``bound``; see :func:`~..progress.claim_plan`)."""
        self.process = process
        self.backoff.started()
        self.start_facts = {**(claim or {}), "process_started": Fact(utc_now(), what)}
        self.log.note(what)
        self._set(AgentStatus.STARTING, "Claimed", what)
        self.run()

    def restore_failed(self, reason: str | None, message: str | None) -> None:
        """An agent that had failed before the proxy restarted stays failed."""
        self.port = None
        self._set(AgentStatus.FAILED, reason or "Failed", message)

    def restore_suspended(self, suspension: Suspension, process: AgentProcess | None) -> None:
        """An agent that was suspended before the proxy restarted stays suspended; ``process``
        is a run the suspension had not ended yet (the proxy stopped half-way), ended now."""
        self.port = None
        self.suspension = suspension
        if process is not None:
            stop_in_background(process, tag=self.tag, table=self.host.table)
        self._set(AgentStatus.SUSPENDED, SUSPENDED_REASON, suspension.message())

    def run(self) -> None:
        """Start supervising (a task of the running loop)."""
        if self._task is None and self.status is not AgentStatus.FAILED:
            self._task = asyncio.get_running_loop().create_task(self._main(), name=f"agent {self.id}")

    # --- the supervision loop -----------------------------------------------------------------

    async def _main(self) -> None:
        # One iteration per run of agentapi; the crash-loop rule bounds how many there are.
        try:
            while True:
                if self.process is None:
                    try:
                        await self._respawn()
                    except (OSError, BackendError) as exc:
                        ended: Ended = Ended("StartError", f"cannot start agentapi: {failure_text(exc)}")
                    else:
                        ended = await self._watch()
                else:
                    ended = await self._watch()
                self._record_end(ended)
                await self._clean_up_leftovers()
                if ended.final:
                    self._fail(ended.reason, f"{ended.description}; last log lines:\n{log_tail(self.log)}")
                    return
                delay = self.backoff.next_delay()
                if delay is None:
                    self._fail("CrashLoopBackOff",
                               f"agentapi ended {self.backoff.recent_ends} times within "
                               f"{self.timing.crash_loop_window:g} s (last: {ended.description}); not restarting. "
                               f"Last log lines:\n{log_tail(self.log)}")
                    return
                self.log.note(f"{ended.description}; restarting in {delay:g} s")
                self._set(AgentStatus.STARTING, ended.reason,
                          f"{ended.description}; restarting in {delay:g} s (restart {self.restarts + 1})")
                await asyncio.sleep(delay)
                self.restarts += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must neither leave the agent looking alive nor orphan it
            log.exception("supervision of agent %s failed", self.id)
            await self._end(self.process, self.timing.leftover_grace)
            self._fail("SupervisorError", f"supervision failed: {failure_text(exc)}")

    async def _respawn(self) -> None:
        """Start agentapi again, on its old port unless something else took that meanwhile."""
        # What an earlier run left (also one that ended while no proxy watched) goes first.
        await self._end(None, self.timing.leftover_grace)
        if self.port is None or not port_is_free(self.port):
            if self.port is not None:
                self.host.ports.release(self.port, self.id)
                self.port = None
            self.port = await self.host.ports.allocate(self.id)
        await self.launch()

    async def _watch(self) -> Ended:
        """Wait for readiness, then for the end of this run."""
        process = self.process
        assert process is not None
        if not process.identity.cmdline:  # launched, but cancelled before it settled
            await process.settle()
        self.host.changed(self)  # persists the complete identity
        self._over_limit.clear()
        exited_ = asyncio.ensure_future(process.wait())
        over_limit = asyncio.ensure_future(self._over_limit.wait())
        try:
            if self.status is not AgentStatus.READY:
                ended = await self._until_ready(process, exited_, over_limit)
                if isinstance(ended, Ended):
                    return ended
                self.ready_at = utc_now()
                self._set(AgentStatus.READY, *(ended or (None, None)))
            self._follow_conversation()
            await asyncio.wait({exited_, over_limit}, return_when=asyncio.FIRST_COMPLETED)
            if not exited_.done():
                return await self._kill_over_limit(process)
            return exited(exited_.result())
        finally:
            self.conversation.stop()
            over_limit.cancel()
            exited_.cancel()  # only this waiter: the process keeps its own watch

    async def _until_ready(self, process: AgentProcess, exited_: asyncio.Future[int | None],
                           over_limit: asyncio.Future[Any]) -> Ended | tuple[str, str] | None:
        """Probe agentapi until it answers with the conversation of its state file back (None),
        or how the run ended first. An agentapi that answers but has not loaded its
        conversation within ``start_timeout`` (one whose agent never shows the prompt agentapi
        waits for) is ready all the same: then the reason and message that say so."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + self.timing.start_timeout
        interval = self.timing.probe_interval_min
        answered = False
        saved = 0
        while True:
            if exited_.done():
                return exited(exited_.result())
            if over_limit.done():
                return await self._kill_over_limit(process)
            if answered or await self.host.probe(self.port or 0):
                if not answered:
                    answered = True
                    self.start_facts["agentapi_answering"] = Fact(utc_now(), f"agentapi answers on port {self.port}")
                    # Read once per run, once agentapi answers: it only ever adds to what it
                    # loaded, and writes the file from its own messages, so a later write holds
                    # no more than it will have.
                    saved = await asyncio.to_thread(read_saved_messages, state_file(str(self.work_dir)))
                    if saved > 1:
                        self._set(AgentStatus.STARTING, RESTORING_REASON,
                                  f"waiting for agentapi to load the {saved} messages of its conversation")
                if saved <= 1 or await self.host.restored(self.port or 0, saved):
                    self.start_facts["restored"] = Fact(utc_now(), f"its {saved} saved messages are back" if saved > 1
                                                        else "no saved conversation to load")
                    return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                if answered:
                    what = (f"agentapi did not load the {saved} messages of its state file within "
                            f"{self.timing.start_timeout:g} s; the conversation may be incomplete")
                    self.log.note(what)
                    return NOT_RESTORED_REASON, what
                self.log.note(f"agentapi did not answer within {self.timing.start_timeout:g} s; stopping it")
                await self._end(process, self.timing.leftover_grace)
                return Ended("StartTimeout", f"agentapi did not answer GET /status on port {self.port} "
                             f"within {self.timing.start_timeout:g} s", final=True)
            await asyncio.wait({exited_, over_limit}, timeout=min(interval, remaining),
                               return_when=asyncio.FIRST_COMPLETED)
            interval = probe_interval(interval, loop.time() - began, self.timing)

    # --- the conversation of a ready agent -----------------------------------------------------

    def _follow_conversation(self) -> None:
        follower = self.host.follower(self.port or 0, self.spec.message, self.conversation.changed)
        if follower is not None:
            self.conversation.start(follower)

    def _save_now(self) -> None:
        """Ask agentapi to write its state file (SIGUSR1 saves without exiting)."""
        if self.process is not None and self.status is AgentStatus.READY:
            self.process.signal(signal.SIGUSR1)  # agentapi alone: SIGUSR1 would end most agents

    def _screen_changed(self) -> None:
        """The screen changed (a message or agentapi's status): look again whether the agent waits
        for its user, at most every :data:`WAITING_CHECK_INTERVAL`, and a few times after (the hook
        may write its file a moment after the screen that asks)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._waiting_checked >= WAITING_CHECK_INTERVAL:
            self._check_waiting()
        elif self._waiting_recheck is None:
            self._waiting_recheck = loop.call_later(WAITING_CHECK_INTERVAL, self._check_waiting)
        for delay in WAITING_RECHECKS:
            loop.call_later(delay, self._check_waiting)

    def _check_waiting(self) -> None:
        """The agent waits while its hooks left a question (cleared by its hooks when the turn
        goes on, and by :meth:`answered`): a tool that runs for a minute after a yes never shows
        ``waiting_input`` in between."""
        self._waiting_recheck = None
        self._waiting_checked = asyncio.get_running_loop().time()
        question = read_question(str(self.work_dir)) if self.status is AgentStatus.READY else None
        if question != self.question:
            self.question = question
            self.log.note(f"waiting for its user: {question}" if question else "no longer waiting for its user")
            self.host.changed(self)

    def answered(self) -> None:
        """A message was sent to the agent: whatever it asked is answered."""
        if self.question is not None:
            clear_question(str(self.work_dir))
            self.question = None
            self.log.note("a message answered its question")
            self.host.changed(self)

    def _first_message_delivered(self) -> None:
        self.start_facts[FIRST_MESSAGE] = Fact(utc_now(), "the first message is in the conversation")
        if self.reason == FIRST_MESSAGE_PENDING:
            self.log.note("the first message was delivered")
            self._set(self.status, None, None)
        else:
            self.host.changed(self)  # no visible change: the start's progress alone moves on

    def _first_message_overdue(self, message: str) -> None:
        if self.status is AgentStatus.READY:
            self.log.note("the first message is not delivered yet")
            self._set(AgentStatus.READY, FIRST_MESSAGE_PENDING, message)

    # --- ends ---------------------------------------------------------------------------------

    async def _kill_over_limit(self, process: AgentProcess) -> Ended:
        rss = self.sample.rss_bytes if self.sample else 0
        what = f"memory use {human_bytes(rss)} exceeded the limit {self.spec.resources.memory_limit}"
        self.log.note(f"{what}: killing the agent's processes")
        # Like the kernel's OOM killer: no grace period, the memory is needed now.
        await self._end(process, grace=0)
        return Ended("OOMKilled", what, 128 + signal.SIGKILL)

    def _record_end(self, ended: Ended) -> None:
        if self.process is not None:
            self.process.forget()
        self.last_state = {"reason": ended.reason, "exit_code": ended.exit_code, "message": ended.description,
                           "finished_at": datetime.now(UTC).isoformat()}
        # Not ready from this moment (no upstream to route to), whatever comes next; the next
        # run's start has reached nothing yet.
        self.start_facts = {}
        self.question = None
        self._set(AgentStatus.STARTING, ended.reason, ended.description)

    async def _clean_up_leftovers(self) -> None:
        """End what remains of the tree (an agent that outlived its agentapi), then forget the run."""
        await self._end(None, self.timing.leftover_grace)
        self.process = None
        self.sample = None

    def _fail(self, reason: str, message: str) -> None:
        self.log.note(f"failed ({reason})")
        if self.port is not None:
            self.host.ports.release(self.port, self.id)
            self.port = None
        self.process = None
        self._set(AgentStatus.FAILED, reason, message)

    # --- what the backend's monitor measured -----------------------------------------------

    def observe(self, identity: Identity, sample: TreeSample) -> None:
        """A sample of the tree of ``identity``; over the memory limit, the tree is killed."""
        if self.process is None or self.process.identity != identity:
            return  # a sample of a run that has ended meanwhile
        self.sample = sample
        if self.memory_limit and sample.rss_bytes > self.memory_limit:
            self._over_limit.set()

    def disk_due(self, now: float) -> bool:
        """True (and counted as measured now) when the work directory is due to be measured."""
        if now - self.disk_measured_at < self.timing.disk_interval:
            return False
        self.disk_measured_at = now
        return True

    def disk_measured(self, size: int, complete: bool) -> None:
        """The size of the work directory (``complete``: every entry was counted)."""
        self.work_dir_bytes, self.work_dir_complete = size, complete

    async def _end(self, process: AgentProcess | None, grace: float) -> None:
        """End ``process`` and whatever else belongs to the agent: the processes of its last
        sampled tree and those carrying its tag."""
        members = self.sample.members if self.sample else ()
        await stop_tree(process, members, tag=self.tag, grace=grace, table=self.host.table)

    # --- stopping -------------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop supervising and end the whole process tree (SIGTERM, ``grace``, SIGKILL)."""
        self._set(AgentStatus.STOPPING, "Deleting", None)
        await self._end_run(grace, "stopping")
        self._set(AgentStatus.STOPPED, "Deleted", None)

    async def suspend(self, grace: float, suspension: Suspension) -> None:
        """End the process tree as :meth:`stop` does, keeping the work directory (and in it the
        conversation, which agentapi saves on SIGTERM), and give the port up."""
        self.suspension = suspension
        self._set(AgentStatus.STOPPING, SUSPENDING_REASON, "stopping the agent; its work directory is kept")
        await self._end_run(grace, f"suspending ({suspension.cause})")
        self.port = self.sample = None
        self._set(AgentStatus.SUSPENDED, SUSPENDED_REASON, suspension.message())

    async def _end_run(self, grace: float, why: str) -> None:
        """Stop supervising, end the whole process tree and release the port."""
        # Not adopted after all: the sweep by its tag below ends its process.
        self.awaiting_adoption, self.adopting = False, None
        await self._cancel()
        self.conversation.stop()  # agentapi saves the conversation itself on SIGTERM
        process = self.process
        self.log.note(why)
        await self._end(process, grace)
        if process is not None:
            process.forget()
        self.process = None
        if self.port is not None:
            self.host.ports.release(self.port, self.id)

    async def wake(self) -> None:
        """Start a suspended agent again on a free port and supervise it (raises ``OSError`` or
        :class:`BackendError`, and stays suspended, when agentapi cannot be started)."""
        suspension = self.suspension
        assert suspension is not None and self.status is AgentStatus.SUSPENDED
        self.port = await self.host.ports.allocate(self.id)
        self.backoff = RestartBackoff(self.timing)
        self.suspension = None
        self.log.note("resuming")
        try:
            await self.launch()
        except BaseException:
            self.abandon()
            self.host.ports.release(self.port, self.id)
            self.port = None
            self.suspension = suspension
            self._set(AgentStatus.SUSPENDED, SUSPENDED_REASON, suspension.message())
            raise
        self.run()

    async def detach(self) -> None:
        """Stop supervising and leave the processes running (the next proxy re-adopts them)."""
        self.conversation.stop(save=True)  # a change not saved yet is saved now, while we still can
        await self._cancel()
        if self.process is not None:
            self.process.forget()

    async def _cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # --- state --------------------------------------------------------------------------------

    def _set(self, status: AgentStatus, reason: str | None, message: str | None) -> None:
        self.status, self.reason, self.message = status, reason, message
        self.host.changed(self)

    def state(self) -> AgentState:
        """The agent as the API shows it: the very same object for as long as nothing it is
        made of changed (see :func:`.report.state_key`), so that its JSON is made once per
        change (see :mod:`agentproxy.api.listing`) rather than on every read of a list."""
        key = state_key(self)
        cached = self._state_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        state = self.build_state()
        self._state_cache = (key, state)
        return state

    def build_state(self) -> AgentState:
        """The agent's state made afresh from its fields (:meth:`state` reuses it while they do
        not change)."""
        return AgentState(spec=self.spec, mode="local", status=self.status, created_at=self.created_at,
                          reason=self.reason, message=self.message, upstream=self.upstream,
                          restarts=self.restarts, details=agent_details(self),
                          suspended=self.suspension is not None, last_active=last_active(self),
                          question=self.question if self.status is AgentStatus.READY else None)

    def record(self) -> dict[str, Any]:
        """What the state file keeps of the agent."""
        return agent_record(self)
