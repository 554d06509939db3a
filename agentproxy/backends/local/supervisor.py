"""One agent's life: start agentapi, wait until it answers, restart it when it dies,
enforce its memory limit, stop it.

Restarts follow Kubernetes' CrashLoopBackOff: the delay starts at
``backoff_initial`` seconds and doubles up to ``backoff_max``; a run that lasted
``stable_after`` seconds resets it. Unlike Kubernetes the supervisor gives up:
``crash_loop_failures`` exits within ``crash_loop_window`` seconds make the agent
``failed`` (reason ``CrashLoopBackOff``), because nobody watches a local proxy's
agents the way a cluster operator watches pods.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import shlex
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Protocol

from ...launch import AgentLaunch
from ...quantity import parse_quantity
from ...spec import AgentSpec
from ..base import AgentState, AgentStatus, BackendError
from ..conversation import (
    DELIVERED, FIRST_MESSAGE_PENDING, MESSAGE, ConversationFollower, first_message_overdue,
)
from .logs import AgentLog
from .ports import HOST, PortAllocator, port_is_free
from .process import (
    TAG_VARIABLE, AgentProcess, Identity, ProcessTable, TreeSample, agent_environment, stop_tree,
)

log = logging.getLogger(__name__)

_ORPHAN_STOPS: set[asyncio.Task[None]] = set()
"""Stops of processes whose launch was cancelled (referenced until done, or they could be
garbage-collected half-way)."""

MESSAGE_TAIL_LINES = 20
MESSAGE_TAIL_CHARS = 4000


@dataclass(frozen=True)
class Policy:
    """Timings of supervision. The defaults are the proxy's; tests shorten them."""

    start_timeout: float = 30.0
    """Seconds agentapi has to answer ``GET /status`` after it was started."""
    stop_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when an agent is deleted."""
    leftover_grace: float = 2.0
    """The same for processes of a tree whose agentapi already exited."""
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    stable_after: float = 60.0
    """A run this long resets the back-off delay and the count of quick failures."""
    crash_loop_failures: int = 5
    crash_loop_window: float = 300.0
    probe_interval_min: float = 0.025
    probe_fast_for: float = 2.0
    """Readiness is probed every ``probe_interval_min`` seconds for this long (most agents
    start within it, and every probe interval adds to their time to ready), then less and
    less often, down to every ``probe_interval_max`` seconds."""
    probe_interval_max: float = 0.25
    probe_timeout: float = 2.0
    launch_concurrency: int = 4
    """Agents spawned at the same time, at most (until each one's program is executing)."""
    sample_interval: float = 1.0
    """Seconds between samples of CPU and memory (and checks of the memory limit and log size)."""
    disk_interval: float = 30.0
    """Seconds between measurements of a work directory (a walk of the whole tree)."""
    state_save_interval: float = 2.0
    """Seconds after a change of the conversation within which agentapi is asked to save it
    (``local_mode.state_save_interval``)."""
    first_message_timeout: float = 120.0
    """Seconds after readiness within which the first message should be delivered
    (``agents.first_message_timeout``)."""


class SupervisorHost(Protocol):
    """What a supervisor needs from its backend."""

    policy: Policy
    ports: PortAllocator
    table: ProcessTable
    launches: asyncio.Semaphore
    """Bounds how many agents are being spawned at once (``Policy.launch_concurrency``)."""

    def launch_of(self, spec: AgentSpec, port: int, work_dir: Path) -> AgentLaunch:
        """How to start the agent, programs as absolute paths (raises BackendError when a
        program is missing)."""

    async def probe(self, port: int) -> bool:
        """True when agentapi answers ``GET /status`` on ``port``."""

    def follower(self, port: int, first_message: str | None,
                 on_change: "Callable[[str], None]") -> ConversationFollower | None:
        """A follower of the conversation of the agentapi on ``port`` (None once closing)."""

    def changed(self, supervisor: "Supervisor") -> None:
        """Publish and persist the supervisor's new state."""


@dataclass(frozen=True)
class Ended:
    """How one run of agentapi ended."""

    reason: str
    """``Error``, ``Completed``, ``OOMKilled``, ``StartError``, ``StartTimeout`` or ``Exited``."""
    description: str
    exit_code: int | None = None
    final: bool = False
    """No restart: the agent becomes failed at once."""


class Supervisor:
    """Supervises one agent: owns its port, process, log and a task that keeps it running."""

    def __init__(self, host: SupervisorHost, spec: AgentSpec, *, port: int | None, work_dir: Path,
                 log_file: Path, created_at: datetime, restarts: int = 0,
                 last_state: dict[str, Any] | None = None, tag: str | None = None) -> None:
        self.host = host
        self.policy = host.policy
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
        self.memory_limit = _bytes(spec.resources.memory_limit)
        self._task: asyncio.Task[None] | None = None
        self._over_limit = asyncio.Event()
        self._failures: collections.deque[float] = collections.deque()
        self._backoff = self.policy.backoff_initial
        self._run_started: float | None = None
        self.conversation: ConversationFollower | None = None
        """The conversation of the current run, followed while the agent is ready."""
        self._following: asyncio.Task[None] | None = None
        self._save_timer: asyncio.TimerHandle | None = None
        self._first_message_timer: asyncio.TimerHandle | None = None

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
        """Start agentapi now (raises ``OSError`` or :class:`BackendError`: nothing runs then).

        The spawn runs in a worker thread: Popen returns only once the new program is being
        executed, which on a busy machine takes tens of milliseconds, and the event loop
        serves the proxy's API meanwhile.
        """
        assert self.port is not None
        launch = self.host.launch_of(self.spec, self.port, self.work_dir)
        argv = list(launch.argv)
        self.log.note(f"starting {shlex.join(argv)}")
        env = agent_environment(launch.env, {TAG_VARIABLE: self.tag})
        # A few at a time: a new program competes for the CPU until it is executing, and a
        # hundred at once would starve the proxy's own event loop for a second or more.
        async with self.host.launches:
            spawning = asyncio.ensure_future(asyncio.to_thread(self._spawn, argv, env))
            try:
                process = await asyncio.shield(spawning)
            except asyncio.CancelledError:
                # The spawn itself cannot be called off: end what it starts, so that nothing runs
                # unsupervised (a later start finds the agent dead and starts it again).
                spawning.add_done_callback(self._stop_orphan)
                raise
            self.process = process
            self.sample = None
            self._run_started = time.monotonic()
            self._set(AgentStatus.STARTING, "Starting", f"waiting for agentapi on port {self.port}")
            await process.settle()

    def _spawn(self, argv: list[str], env: dict[str, str]) -> AgentProcess:
        # Every start, not only the first: someone may have removed it while the agent was down.
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return AgentProcess.spawn(argv, env=env, cwd=self.work_dir, log_path=self.log.path)

    def _stop_orphan(self, spawning: "asyncio.Future[AgentProcess]") -> None:
        if not spawning.cancelled() and spawning.exception() is None:
            self._stop_in_background(spawning.result())

    def abandon(self) -> None:
        """The creation of this agent was called off after its process started: end it."""
        if self.process is not None:
            self._stop_in_background(self.process)
            self.process = None

    def _stop_in_background(self, process: AgentProcess) -> None:
        task = asyncio.get_running_loop().create_task(self._end(process, grace=0))
        _ORPHAN_STOPS.add(task)
        task.add_done_callback(_ORPHAN_STOPS.discard)

    def adopt(self, process: AgentProcess) -> None:
        """Take over a process a previous proxy started."""
        self.process = process
        self._run_started = time.monotonic()
        self.log.note(f"re-adopted pid {process.pid} after a restart of the proxy")
        self._set(AgentStatus.STARTING, "Adopted", f"re-adopted pid {process.pid}; checking agentapi")

    def restore_failed(self, reason: str | None, message: str | None) -> None:
        """An agent that had failed before the proxy restarted stays failed."""
        self.port = None
        self._set(AgentStatus.FAILED, reason or "Failed", message)

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
                        ended: Ended | None = Ended("StartError", f"cannot start agentapi: {_text(exc)}")
                    else:
                        ended = None
                    if ended is None:
                        ended = await self._watch()
                else:
                    ended = await self._watch()
                self._record_end(ended)
                await self._clean_up_leftovers()
                if ended.final:
                    self._fail(ended.reason, f"{ended.description}; last log lines:\n{self._tail()}")
                    return
                delay = self._next_delay()
                if delay is None:
                    count = len(self._failures)
                    self._fail("CrashLoopBackOff",
                               f"agentapi ended {count} times within {self.policy.crash_loop_window:g} s "
                               f"(last: {ended.description}); not restarting. Last log lines:\n{self._tail()}")
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
            await self._end(self.process, self.policy.leftover_grace)
            self._fail("SupervisorError", f"supervision failed: {_text(exc)}")

    async def _respawn(self) -> None:
        """Start agentapi again, on its old port unless something else took that meanwhile."""
        # What an earlier run left (also one that ended while no proxy watched) goes first.
        await self._end(None, self.policy.leftover_grace)
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
        exited = asyncio.ensure_future(process.wait())
        over_limit = asyncio.ensure_future(self._over_limit.wait())
        try:
            if self.status is not AgentStatus.READY:
                began = time.monotonic()
                deadline = began + self.policy.start_timeout
                interval = self.policy.probe_interval_min
                while True:
                    if exited.done():
                        return self._exited(exited.result())
                    if over_limit.done():
                        return await self._kill_over_limit(process)
                    if await self.host.probe(self.port or 0):
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.log.note(f"agentapi did not answer within {self.policy.start_timeout:g} s; stopping it")
                        await self._end(process, self.policy.leftover_grace)
                        return Ended("StartTimeout", f"agentapi did not answer GET /status on port {self.port} "
                                     f"within {self.policy.start_timeout:g} s", final=True)
                    await asyncio.wait({exited, over_limit}, timeout=min(interval, remaining),
                                       return_when=asyncio.FIRST_COMPLETED)
                    if time.monotonic() - began >= self.policy.probe_fast_for:
                        interval = min(interval * 1.5, self.policy.probe_interval_max)
                self._set(AgentStatus.READY, None, None)
            self._follow_conversation()
            await asyncio.wait({exited, over_limit}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                return await self._kill_over_limit(process)
            return self._exited(exited.result())
        finally:
            self._stop_following()
            over_limit.cancel()
            exited.cancel()  # only this waiter: the process keeps its own watch

    # --- the conversation of a ready agent -----------------------------------------------------

    def _follow_conversation(self) -> None:
        """Follow the conversation of this run: save it soon after each change, and tell when
        the first message is late."""
        follower = self.host.follower(self.port or 0, self.spec.message, self._conversation_changed)
        if follower is None:
            return
        self.conversation = follower
        self._following = asyncio.get_running_loop().create_task(follower.follow(), name=f"conversation {self.id}")
        if not follower.delivered:
            self._first_message_timer = asyncio.get_running_loop().call_later(
                self.policy.first_message_timeout, self._first_message_overdue)

    def _stop_following(self, save: bool = False) -> None:
        """Stop following the run's conversation; ``save`` asks agentapi to save a pending change now."""
        if self._following is not None:
            self._following.cancel()
            self._following = None
        for timer in (self._first_message_timer, self._save_timer):
            if timer is not None:
                timer.cancel()
        self._first_message_timer = None
        if self._save_timer is not None:
            self._save_timer = None
            if save:
                self._save_now()
        self.conversation = None

    def _conversation_changed(self, what: str) -> None:
        if what == MESSAGE and self._save_timer is None:
            self._save_timer = asyncio.get_running_loop().call_later(self.policy.state_save_interval,
                                                                     self._save_now)
        elif what == DELIVERED and self.reason == FIRST_MESSAGE_PENDING:
            self.log.note("the first message was delivered")
            self._set(self.status, None, None)

    def _save_now(self) -> None:
        """Ask agentapi to write its state file (SIGUSR1 saves without exiting)."""
        self._save_timer = None
        if self.process is not None and self.status is AgentStatus.READY:
            self.process.signal(signal.SIGUSR1)  # agentapi alone: SIGUSR1 would end most agents

    def _first_message_overdue(self) -> None:
        self._first_message_timer = None
        follower = self.conversation
        if follower is None or follower.delivered or self.status is not AgentStatus.READY:
            return
        self.log.note("the first message is not delivered yet")
        self._set(AgentStatus.READY, FIRST_MESSAGE_PENDING,
                  first_message_overdue(self.policy.first_message_timeout, follower.status))

    def _exited(self, code: int | None) -> Ended:
        code = _conventional(code)
        if code is None:
            return Ended("Exited", "agentapi exited (exit code unknown: it was started by an earlier proxy)")
        return Ended("Completed" if code == 0 else "Error", f"agentapi exited with code {code}", code)

    async def _kill_over_limit(self, process: AgentProcess) -> Ended:
        rss = self.sample.rss_bytes if self.sample else 0
        what = f"memory use {_human(rss)} exceeded the limit {self.spec.resources.memory_limit}"
        self.log.note(f"{what}: killing the agent's processes")
        # Like the kernel's OOM killer: no grace period, the memory is needed now.
        await self._end(process, grace=0)
        return Ended("OOMKilled", what, 128 + signal.SIGKILL)

    def _record_end(self, ended: Ended) -> None:
        if self.process is not None:
            self.process.forget()
        self.last_state = {"reason": ended.reason, "exit_code": ended.exit_code, "message": ended.description,
                           "finished_at": datetime.now(timezone.utc).isoformat()}
        # Not ready from this moment (no upstream to route to), whatever comes next.
        self._set(AgentStatus.STARTING, ended.reason, ended.description)

    async def _clean_up_leftovers(self) -> None:
        """End what remains of the tree (an agent that outlived its agentapi), then forget the run."""
        await self._end(None, self.policy.leftover_grace)
        self.process = None
        self.sample = None

    def _next_delay(self) -> float | None:
        """The back-off before the next start, or None when the agent is in a crash loop."""
        now = time.monotonic()
        started = self._run_started
        if started is not None and now - started >= self.policy.stable_after:
            self._failures.clear()
            self._backoff = self.policy.backoff_initial
        self._failures.append(now)
        while self._failures and self._failures[0] < now - self.policy.crash_loop_window:
            self._failures.popleft()
        if len(self._failures) >= self.policy.crash_loop_failures:
            return None
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.policy.backoff_max)
        return delay

    def _fail(self, reason: str, message: str) -> None:
        self.log.note(f"failed ({reason})")
        if self.port is not None:
            self.host.ports.release(self.port, self.id)
            self.port = None
        self.process = None
        self._set(AgentStatus.FAILED, reason, message)

    # --- samples from the backend's monitor ----------------------------------------------------

    def observe(self, identity: Identity, sample: TreeSample) -> None:
        """A sample of the tree of ``identity``; over the memory limit, the tree is killed."""
        if self.process is None or self.process.identity != identity:
            return  # a sample of a run that has ended meanwhile
        self.sample = sample
        if self.memory_limit and sample.rss_bytes > self.memory_limit:
            self._over_limit.set()

    def _members(self) -> tuple[tuple[int, float], ...]:
        return self.sample.members if self.sample else ()

    async def _end(self, process: AgentProcess | None, grace: float) -> None:
        """End ``process`` and whatever else belongs to the agent: the processes of its last
        sampled tree and those carrying its tag."""
        await stop_tree(process, self._members(), tag=self.tag, grace=grace, table=self.host.table)

    # --- stopping -------------------------------------------------------------------------------

    async def stop(self, grace: float) -> None:
        """Stop supervising and end the whole process tree (SIGTERM, ``grace``, SIGKILL)."""
        self._set(AgentStatus.STOPPING, "Deleting", None)
        await self._cancel()
        self._stop_following()  # agentapi saves the conversation itself on SIGTERM
        process = self.process
        self.log.note("stopping")
        await self._end(process, grace)
        if process is not None:
            process.forget()
        self.process = None
        if self.port is not None:
            self.host.ports.release(self.port, self.id)
        self._set(AgentStatus.STOPPED, "Deleted", None)

    async def detach(self) -> None:
        """Stop supervising and leave the processes running (the next proxy re-adopts them)."""
        self._stop_following(save=True)  # a change not saved yet is saved now, while we still can
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

    def _tail(self) -> str:
        text = self.log.tail(MESSAGE_TAIL_LINES).rstrip("\n")
        if len(text) > MESSAGE_TAIL_CHARS:
            text = "..." + text[-MESSAGE_TAIL_CHARS:]
        return text or "(the log is empty)"

    def state(self) -> AgentState:
        """The agent as the API shows it."""
        process = self.process
        sample = self.sample
        details: dict[str, Any] = {
            "pid": process.pid if process is not None else None,
            "port": self.port,
            "work_dir": str(self.work_dir),
            "log_file": str(self.log.path),
            "command": list(self.spec.command),
            "agentapi_type": self.spec.agentapi_type,
            "adopted": bool(process is not None and process.adopted),
            "processes": len(sample.members) if sample else None,
            "cpu_percent": sample.cpu_percent if sample else None,
            "rss_bytes": sample.rss_bytes if sample else None,
            "memory_limit_bytes": self.memory_limit,
            "work_dir_bytes": self.work_dir_bytes,
            "last_exit_code": (self.last_state or {}).get("exit_code"),
            "last_state": self.last_state,
        }
        if not self.work_dir_complete:
            details["work_dir_bytes_partial"] = True
        return AgentState(spec=self.spec, mode="local", status=self.status, created_at=self.created_at,
                          reason=self.reason, message=self.message, upstream=self.upstream,
                          restarts=self.restarts, details=details)

    def record(self) -> dict[str, Any]:
        """What the state file keeps of the agent."""
        process = self.process
        return {
            "spec": self.spec.to_json(),
            "port": self.port,
            "created_at": self.created_at.isoformat(),
            "restarts": self.restarts,
            "tag": self.tag,
            "process": process.identity.to_dict() if process is not None and not process.exited else None,
            "status": "failed" if self.status is AgentStatus.FAILED else "running",
            "reason": self.reason if self.status is AgentStatus.FAILED else None,
            "message": self.message if self.status is AgentStatus.FAILED else None,
            "last_state": self.last_state,
        }


def _bytes(quantity: str) -> int | None:
    try:
        value = int(parse_quantity(quantity))
    except ValueError:
        return None
    return value if value > 0 else None


def _conventional(code: int | None) -> int | None:
    """An exit code as shells and Kubernetes show it: 128+N for a death by signal N."""
    if code is not None and code < 0:
        return 128 - code
    return code


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


def _text(exc: BaseException) -> str:
    if isinstance(exc, BackendError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__
