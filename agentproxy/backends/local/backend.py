"""The local backend: agents as supervised ``agentapi`` processes on this machine.

Layout of ``local_mode.data_dir``::

    state.json        every agent: spec, port, process identity, restarts (see state.py)
    lock              held by the proxy that supervises the agents
    work/<id>/        an agent's working directory (kept on delete unless purged)
    logs/<id>.log     its output, capped and rotated (removed on delete)
    pool.json         the warm pools' members, when there are pools (see pool.py)
    pool/<id>.token   a member's binding token (mode 0600), until it is claimed

The proxy can stop and start again without disturbing its agents: :meth:`close`
leaves them running and :meth:`start` registers every agent of the state file at
once (``starting``, reason ``Adopting``) and then, in the background, re-adopts
every process whose pid, start time and command line still match the state file
(one pass over the recorded processes, off the event loop) and restarts the
others: the API serves from the start, whatever the number of agents. A
suspended agent has no process and no port; the state file keeps it suspended.
Where sessions are scheduling groups (Linux autogroups), agents are started by one
helper, in its session (:mod:`.process.starter`): however many agents run, a
restarted proxy competes for the CPU with one group at ``agent_nice``, not with one
group per agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from ...agentapi import AGENTAPI_VERSION, cached_binary, locate
from ...agenthome import claude_environment, home_dir, prepare_claude_home, uses_claude, waiting_hook_command
from ...launch import AGENTAPI_HOST, STATUS_PATH, AgentLaunch, agent_launch
from ...restore import restored
from ...settings import Settings
from ...spec import AgentSpec
from ...teams.agentfiles import prepare_profile_home
from ...teams.credentials import agent_credential_env
from ..base import AgentState, AgentStatus, Backend, Rejected, Unavailable, not_found
from ..conversation import ConversationFollower
from ..index import Membership
from ..limits import CreateLimits
from ..pooling import configured_pools
from ..progress import BOUND, CLAIMED, LOCAL_PLAN, Fact, Facts
from ..suspension import AgentActivity, Suspension, parse_time
from .pool import LocalMember, LocalPools
from .ports import HOST, PortAllocator
from .process import (
    AgentProcess,
    AgentStarter,
    Identity,
    ProcessTable,
    TreeSampler,
    autogroups_enabled,
    directory_size,
    executable_search_path,
    find_executable,
    lower_group,
    lower_priority,
    stop_in_background,
)
from .report import agent_activity
from .state import DataDirLock, StateFile, StateWriter
from .supervisor import Supervisor

log = logging.getLogger(__name__)

PROBES_AT_ONCE = 32
"""Readiness probes (``/status``, ``/messages``) in flight at once, whatever the number of
agents being started or adopted: more would only queue in the event loop and the kernel."""


@dataclass(frozen=True)
class _Adoption:
    """An agent of the state file whose recorded process is still to be looked for."""

    supervisor: Supervisor
    identity: Identity | None
    port: int | None
    """Its recorded port, claimed for it (None when it cannot keep it)."""
    suspended: bool = False
    """A suspended agent: a process found is a leftover to end, not to adopt."""
    recorded_port: Any = None
    """The port of its record (for the log when it cannot keep it)."""


class LocalBackend(Backend):
    """Agents as processes of this machine, supervised by this proxy."""

    mode = "local"
    progress_plan = LOCAL_PLAN

    def __init__(self, settings: Settings) -> None:
        super().__init__(CreateLimits.from_settings(settings.agents))
        self.settings = settings
        self.local = settings.local_mode
        self.timing = self.local.supervision
        """Timings of supervision (``local_mode.supervision``)."""
        self.state_save_interval = self.local.state_save_interval
        self.first_message_timeout = settings.agents.first_message_timeout
        self.data_dir = Path(os.path.expanduser(self.local.data_dir)).absolute()
        self.ports = PortAllocator(self.local.ports.start, self.local.ports.end)
        self._agents: dict[str, Supervisor] = {}
        self._members = Membership()
        """The ids of ``_agents`` by session and owner (lists and limits look at those alone)."""
        self._persisted: dict[str, dict[str, Any]] = {}
        self._state_file = StateFile(self.data_dir / "state.json")
        self._writer = StateWriter(self._state_file, self._records)
        self._dir_lock = DataDirLock(self.data_dir / "lock")
        self._sampler = TreeSampler()
        self.table = ProcessTable()
        """Reads of the process table, shared by every agent being stopped at the same time."""
        self.launches = asyncio.Semaphore(self.timing.launch_concurrency)
        self._probing = asyncio.Semaphore(PROBES_AT_ONCE)
        """Bounds the probes in flight: after a restart every adopted agent is probed at once."""
        self.agent_nice = self.local.agent_nice
        """The CPU priority of agents (see :mod:`.process.priority`)."""
        self.starter: AgentStarter | None = None
        """Starts the agents, all in one scheduling group (see :mod:`.process.starter`); None
        where sessions are no scheduling groups: then this process starts them."""
        self._lowered: set[tuple[int, float]] = set()
        """Processes of agents (pid, start time) already given ``agent_nice`` by the monitor."""
        self._saves: set[asyncio.Task[None]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self._adoption: asyncio.Task[None] | None = None
        """Re-adopts the agents of the state file after a start (see :meth:`_adopt`)."""
        self._http: aiohttp.ClientSession | None = None
        self._started = False
        self._state_problem: str | None = None
        """Why the state file could not be written last time (None once it could)."""
        self._pools: LocalPools | None = None
        """The warm pools (see :mod:`.pool`), once started, when the settings have any."""

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Lock the data_dir and register the agents of the state file; their processes are
        re-adopted (or restarted) in the background, so that the proxy serves at once."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._dir_lock.acquire()
        try:
            if autogroups_enabled():
                nice = self.agent_nice
                # Its session, the one group of every agent, goes below the proxy; not its
                # threads: within that group the helper keeps the proxy's priority, so that
                # the agents it started never hold up the start of the next one.
                self.starter = AgentStarter(on_start=lambda pid: lower_group(pid, nice))
            # force_close: a probe is one request per agent start; pooled idle connections to
            # every agentapi would only hold sockets.
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0))
            self._started = True
            records = await asyncio.to_thread(self._state_file.load)
            adoptions: list[_Adoption] = []
            for agent_id, record in sorted(records.items(), key=lambda item: str(item[1].get("created_at"))):
                try:
                    adoption = self._restore(agent_id, record)
                except (ValueError, KeyError, TypeError) as exc:
                    log.error("agent %s in %s cannot be restored (%s); it is dropped from the state",
                              agent_id, self._state_file.path, exc)
                    continue
                if adoption is not None:
                    adoptions.append(adoption)
            # In the background, as every change is (those of the restored agents are on their way
            # already): the API serves without waiting for a fsync, and a full disk is no reason
            # not to serve (readiness tells).
            self._save_in_background()
        except BaseException:
            await self.close()  # leaves whatever was re-adopted running, as any close does
            raise
        loop = asyncio.get_running_loop()
        self._adoption = loop.create_task(self._adopt(adoptions), name="local agents adoption")
        self._monitor = loop.create_task(self._monitor_loop(), name="local agents monitor")
        configured = configured_pools(self.settings)
        if configured or (self.data_dir / "pool.json").exists():  # a removed pool's members still go
            self._pools = LocalPools(self, configured)
            await self._pools.start()
            self.pools = self._pools

    def _restore(self, agent_id: str, record: dict[str, Any]) -> _Adoption | None:
        """Register the agent of a state-file record; what is left to do with its process."""
        # Everything is read before anything is registered: a bad record changes nothing.
        spec = AgentSpec.from_json(record["spec"])
        if spec.id != agent_id:
            raise ValueError(f"the record holds agent {spec.id!r}")
        port = record.get("port")
        failed = record.get("status") == "failed"
        suspended = record.get("status") == "suspended"
        identity = Identity.from_dict(record["process"]) if record.get("process") and not failed else None
        supervisor = self._supervisor(spec, port=None, created_at=datetime.fromisoformat(record["created_at"]),
                                      restarts=int(record.get("restarts") or 0), last_state=record.get("last_state"),
                                      tag=record.get("tag"), active_at=parse_time(record.get("active_at")))
        supervisor.start_kind = "warm" if record.get("start") == "warm" else "cold"
        supervisor.pool = record.get("pool") if isinstance(record.get("pool"), str) else None
        self._agents[agent_id] = supervisor
        self._members.add(spec)
        if failed:
            supervisor.restore_failed(record.get("reason"), record.get("message"))
            return None
        if suspended:
            supervisor.restore_suspended(Suspension.from_dict(record.get("suspension") or {}), None)
            # A run the suspension had not ended yet (the proxy stopped half-way) is ended once found.
            return _Adoption(supervisor, identity, None, suspended=True) if identity is not None else None
        # Its port is claimed now, so that no agent created meanwhile gets it.
        kept = port if isinstance(port, int) and self.ports.claim(port, agent_id) else None
        supervisor.await_adoption(identity, kept)
        return _Adoption(supervisor, identity, kept, recorded_port=port)

    async def _adopt(self, adoptions: list[_Adoption]) -> None:
        """Find the processes of every agent being adopted in one pass off the event loop,
        then take over each one still running and start the others again."""
        looked_for = [a for a in adoptions if a.identity is not None]
        try:
            identities = [a.identity for a in looked_for if a.identity is not None]  # every one: narrows the type
            found = await asyncio.to_thread(AgentProcess.adopt_all, identities, self.agent_nice)
        except Exception:  # a bug here must not leave every agent starting for ever
            log.exception("looking for the processes of the agents failed; they are started again")
            found = [None] * len(looked_for)
        processes = {id(a): p for a, p in zip(looked_for, found, strict=True)}
        adopted = restarted = 0
        for n, adoption in enumerate(adoptions):
            supervisor, process = adoption.supervisor, processes.get(id(adoption))
            if adoption.suspended:
                if process is not None:
                    # Still suspended: everything of its tag goes. Resumed meanwhile: the old
                    # run's tree alone, not the new run that carries the same tag.
                    tag = supervisor.tag if supervisor.suspension is not None else None
                    stop_in_background(process, tag=tag, table=self.table)
                continue
            if self._agents.get(supervisor.id) is not supervisor or not supervisor.awaiting_adoption:
                continue  # deleted or suspended meanwhile: that ended its process (by its tag)
            if process is not None and adoption.port is None:
                # Its port is outside local_mode.ports now, or recorded for another agent too: it
                # starts afresh on a port of its own (the restart's sweep of its tag ends the old run).
                log.warning("agent %s ran on port %s, which it cannot keep; restarting it", supervisor.id,
                            adoption.recorded_port)
                process = None
            supervisor.resume(process, adoption.port)
            adopted, restarted = adopted + (process is not None), restarted + (process is None)
            if n % 32 == 31:
                await asyncio.sleep(0)  # requests are served between batches
        if adoptions:
            log.info("re-adopted %d running agents, restarting %d", adopted, restarted)

    async def close(self) -> None:
        """Stop supervising; the agents keep running and are re-adopted by the next start.
        Idempotent, and safe after a failed start."""
        was_started, self._started = self._started, False
        try:
            if self._pools is not None:
                self.pools = None
                await self._pools.close()
                self._pools = None
            if self._adoption is not None:
                self._adoption.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._adoption
                self._adoption = None
            if self._monitor is not None:
                self._monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._monitor
                self._monitor = None
            await asyncio.gather(*(s.detach() for s in self._agents.values()))
            if self._saves:
                await asyncio.gather(*self._saves, return_exceptions=True)
            if was_started:
                await self._save_quietly()
        finally:
            if self._http is not None:
                await self._http.close()
                self._http = None
            if self.starter is not None:
                await asyncio.to_thread(self.starter.close)  # its agents keep running
                self.starter = None
            self._dir_lock.release()

    async def healthy(self) -> bool:
        """True when the agentapi binary can be found and the state file written."""
        return await self.readiness() is None

    async def readiness(self) -> str | None:
        """None when agents can be started and remembered, else why not."""
        if self._find_agentapi() is None:
            return f"agentapi not found (local_mode.agentapi_binary is {self.local.agentapi_binary!r})"
        return self._state_problem

    # --- the primitives of the contract (see Backend) -----------------------------------------

    def _state(self, agent_id: str) -> AgentState | None:
        supervisor = self._agents.get(agent_id)
        return supervisor.state() if supervisor is not None else None

    def _states(self) -> Iterable[AgentState]:
        return [s.state() for s in self._agents.values()]

    def _listed(self, session: str | None, owner: Any) -> list[AgentState]:
        # Only the agents asked for; each supervisor hands out its last state while nothing changed.
        return [self._agents[i].state() for i in self._members.ids(session, owner)]

    def _specs(self) -> Iterable[AgentSpec]:
        return [s.spec for s in self._agents.values()]

    def _peers(self, spec: AgentSpec) -> Iterable[AgentSpec]:
        ids = set(self._members.ids(spec.session))
        if spec.owner is not None:
            ids.update(self._members.ids(owner=spec.owner))
        return [self._agents[i].spec for i in ids]

    async def _logs(self, state: AgentState, tail_lines: int) -> str:
        supervisor = self._agents.get(state.id)
        if supervisor is None:
            raise not_found(state.session, state.id)
        return await asyncio.to_thread(supervisor.log.tail, tail_lines)

    async def _prepare(self, spec: AgentSpec | None) -> None:
        self._require_started()

    async def _create_new(self, spec: AgentSpec, prepared: Any) -> AgentState:
        # Every check before anything is allocated: a refused create changes nothing.
        self._agentapi_binary()
        self._command(spec)
        port = await self.ports.allocate(spec.id)
        supervisor = self._supervisor(spec, port=port, created_at=datetime.now(UTC))
        kept_data = supervisor.work_dir.exists()
        try:
            try:
                await asyncio.to_thread(supervisor.work_dir.mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise Unavailable(f"cannot create the work directory {supervisor.work_dir} in "
                                  f"local_mode.data_dir: {exc.strerror or exc}") from None
            try:
                await supervisor.launch()
            except OSError as exc:
                raise Unavailable(f"cannot start agentapi (local_mode.agentapi_binary "
                                  f"{self.local.agentapi_binary!r}) for agent {spec.id!r}: "
                                  f"{exc.strerror or exc}") from None
        except BaseException:  # refused, cancelled, or a program vanished since the checks above
            started = supervisor.process is not None
            supervisor.abandon()
            self.ports.release(port, spec.id)
            if not kept_data and not started:
                # Nothing ran in it: a refused create leaves no work directory behind (at once,
                # without awaiting: this may be a cancellation).
                shutil.rmtree(supervisor.work_dir, ignore_errors=True)
                with contextlib.suppress(OSError):
                    supervisor.log.remove()
            raise
        self._agents[spec.id] = supervisor
        self._members.add(spec)
        self.changed(supervisor)
        supervisor.run()
        try:
            await self._save()
        except OSError as exc:
            # Without its record a restarted proxy would not know the agent: undo it.
            del self._agents[spec.id]
            self._members.discard(spec.id)
            self._persisted.pop(spec.id, None)
            await supervisor.stop(self.timing.stop_grace)
            await asyncio.to_thread(supervisor.log.remove)
            if not kept_data:
                await asyncio.to_thread(shutil.rmtree, supervisor.work_dir, True)
            self.publish_gone(spec.id)
            raise Unavailable(f"agent {spec.id!r} was not created: cannot write the state file "
                              f"{self._state_file.path}: {exc.strerror or exc}") from None
        return supervisor.state()

    async def _claim_member(self, spec: AgentSpec, member: LocalMember, prepared: Any) -> AgentState:
        # Bound first: a member that does not take its binding leaves nothing registered.
        assert self._pools is not None and member.process is not None and member.port is not None
        claimed_at = datetime.now(UTC)
        supervisor = self._supervisor(spec, port=member.port, created_at=claimed_at, tag=member.tag)
        supervisor.start_kind, supervisor.pool = "warm", member.pool
        launch = self.launch_of(spec, member.port, supervisor.work_dir)
        private = await asyncio.to_thread(self.prepare, spec, supervisor.work_dir)
        await self._pools.bind(member, {**launch.env, **private})
        # The claim's own steps: the member's start (its process, made before) is not the agent's.
        claim = {CLAIMED: Fact(claimed_at, f"member {member.id} of pool {member.pool!r} is claimed"),
                 BOUND: Fact(datetime.now(UTC), f"its launcher (pid {member.process.pid}) took the binding and "
                                                f"started agentapi on port {member.port}")}
        self._pools.claimed(member)
        self._agents[spec.id] = supervisor
        self._members.add(spec)
        supervisor.take_over(member.process, f"claimed from pool {member.pool!r} (launcher pid {member.process.pid}, "
                                             f"port {member.port})", claim)
        await self.claim_written(spec.id)
        try:
            await self._save()
        except OSError as exc:
            del self._agents[spec.id]
            self._members.discard(spec.id)
            self._persisted.pop(spec.id, None)
            await supervisor.stop(self.timing.stop_grace)
            await asyncio.to_thread(supervisor.log.remove)
            await asyncio.to_thread(shutil.rmtree, supervisor.work_dir, True)
            self.publish_gone(spec.id)
            raise Unavailable(f"agent {spec.id!r} was not created: cannot write the state file "
                              f"{self._state_file.path}: {exc.strerror or exc}") from None
        return supervisor.state()

    def metrics(self) -> list[Any]:
        """The warm pools' members by state and their claims (when there are pools)."""
        return self._pools.metrics() if self._pools is not None else []

    async def _suspend(self, state: AgentState, suspension: Suspension, guard: Any) -> tuple[AgentState, bool]:
        supervisor = self._agents[state.id]
        await supervisor.suspend(self.timing.stop_grace, suspension)
        await self._save_quietly()  # done either way; the monitor writes the file once it can
        return supervisor.state(), True

    async def _share(self, state: AgentState, spec: AgentSpec) -> AgentState:
        supervisor = self._agents[state.id]
        supervisor.spec = spec  # the owner and session stay: the index of members holds
        await self._save()
        return supervisor.state()

    async def _resume(self, state: AgentState) -> tuple[AgentState, bool]:
        supervisor = self._agents[state.id]
        # Every check before anything changes, as for a create.
        self._agentapi_binary()
        self._command(state.spec)
        try:
            await asyncio.to_thread(supervisor.work_dir.mkdir, parents=True, exist_ok=True)
            await supervisor.wake()
        except OSError as exc:
            raise Unavailable(f"cannot start agentapi (local_mode.agentapi_binary {self.local.agentapi_binary!r}) "
                              f"for agent {state.id!r}: {exc.strerror or exc}") from None
        await self._save_quietly()  # done either way; the monitor writes the file once it can
        return supervisor.state(), True

    async def _record_activity(self, state: AgentState, when: datetime) -> None:
        supervisor = self._agents.get(state.id)
        if supervisor is not None:
            supervisor.active_at = when
            self.changed(supervisor)  # kept in the state file: a restarted proxy counts from it

    async def _activity(self, state: AgentState) -> AgentActivity:
        supervisor = self._agents.get(state.id)
        return agent_activity(supervisor) if supervisor is not None else AgentActivity()

    async def _delete(self, state: AgentState, purge: bool) -> AgentState:
        supervisor = self._agents[state.id]
        await supervisor.stop(self.timing.stop_grace)
        del self._agents[state.id]
        self._members.discard(state.id)
        self._persisted.pop(state.id, None)
        try:
            await self._save()
        except OSError:
            pass  # the agent is gone; the monitor writes the file once it can (see readiness)
        await asyncio.to_thread(supervisor.log.remove)
        if purge:
            await asyncio.to_thread(shutil.rmtree, supervisor.work_dir, True)
        last = supervisor.state()
        final = AgentState(spec=last.spec, mode=self.mode, status=AgentStatus.STOPPED, created_at=last.created_at,
                           reason="Deleted", message="work directory deleted" if purge else "work directory kept",
                           restarts=last.restarts, details=last.details)
        self.publish_gone(state.id, final)
        return final

    def answered(self, agent_id: str) -> None:
        supervisor = self._agents.get(agent_id)
        if supervisor is not None:
            supervisor.answered()

    def _start_facts(self, state: AgentState) -> Facts:
        supervisor = self._agents.get(state.id)
        return supervisor.start_facts if supervisor is not None else {}

    # --- what supervisors use ------------------------------------------------------------------

    def launch_of(self, spec: AgentSpec, port: int, work_dir: Path) -> AgentLaunch:
        """How the agent is started (see :mod:`agentproxy.launch`), every program as an absolute path."""
        return agent_launch(spec, port=port, work_dir=str(work_dir), program=self._agentapi_binary(),
                            command=self._command(spec))

    def prepare(self, spec: AgentSpec, work_dir: Path) -> dict[str, str]:
        """A Claude Code agent gets its prepared home in its work directory (see
        :mod:`agentproxy.agenthome`) and the model's key and endpoint; an agent of a profile
        the profile's instruction file and MCP servers in that home (see
        :mod:`agentproxy.teams.agentfiles`) and the credentials it maps."""
        # The credentials its profile maps, read at each start: a changed one applies at the next.
        credentials = agent_credential_env(self.settings, spec.owner, spec.group, spec.profile)
        real_work_dir = os.path.realpath(work_dir)
        home = home_dir(real_work_dir)
        env: dict[str, str] = {}
        if uses_claude(spec.command):
            claude = self.settings.agents.claude
            key = credentials.get("ANTHROPIC_API_KEY") or os.environ.get(claude.api_key_env) or None
            # Claude Code knows a project by its real path (what its getcwd() says).
            prepare_claude_home(Path(home), work_dir=real_work_dir, api_key=key,
                                permission_mode=claude.permission_mode,
                                hook_command=waiting_hook_command(sys.executable, str(work_dir)))
            env = claude_environment(home, base_url=claude.base_url, api_key=key)
        if prepare_profile_home(self.settings, spec, Path(home)):
            env.setdefault("HOME", home)
        return {**env, **credentials}

    def follower(self, port: int, first_message: str | None,
                 on_change: Callable[[str], None]) -> ConversationFollower | None:
        """A follower of the conversation of the agentapi on ``port``, on the backend's client."""
        if self._http is None or self._http.closed:
            return None
        return ConversationFollower(self._http, f"http://{HOST}:{port}", first_message=first_message,
                                    on_change=on_change)

    async def probe(self, port: int) -> bool:
        """True when agentapi answers ``GET /status`` on ``port`` (with the Host it accepts)."""
        body = await self._agentapi_json(port, STATUS_PATH)
        return isinstance(body, dict) and "status" in body

    async def restored(self, port: int, saved: int) -> bool:
        """True when the agentapi on ``port`` answers ``GET /messages`` with at least the
        ``saved`` messages of its state file (see :func:`agentproxy.restore.restored`)."""
        body = await self._agentapi_json(port, "/messages")
        return body is not None and restored(saved, body)

    async def _agentapi_json(self, port: int, path: str) -> Any:
        """The JSON body of a 200 answer of the agentapi on ``port`` to ``GET path`` (with the
        Host it accepts, within ``probe_timeout``); None for any other answer or none."""
        if self._http is None or self._http.closed:
            return None
        timeout = aiohttp.ClientTimeout(total=self.timing.probe_timeout)
        try:
            async with self._probing, self._http.get(f"http://{HOST}:{port}{path}",
                                                     headers={"Host": AGENTAPI_HOST}, timeout=timeout,
                                                     allow_redirects=False) as response:
                if response.status != 200:
                    return None
                return await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError):
            return None

    def changed(self, supervisor: Supervisor) -> None:
        """Publish a visible change and persist a change of what the state file keeps."""
        if self._agents.get(supervisor.id) is not supervisor:
            return  # not registered yet (being created or restored) or deleted
        self.publish(supervisor.state())
        record = supervisor.record()
        if self._started and self._persisted.get(supervisor.id) != record:
            self._persisted[supervisor.id] = record
            self._save_in_background()

    def _save_in_background(self) -> None:
        """Write the state file soon (writes asked for meanwhile share one); close() waits for it."""
        task = asyncio.get_running_loop().create_task(self._save_quietly())
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _save(self) -> None:
        """Write the state file; remember (for readiness and the log) whether that failed."""
        try:
            await self._writer.save()
        except OSError as exc:
            problem = f"cannot write the state file {self._state_file.path}: {exc.strerror or exc}"
            if problem != self._state_problem:
                log.error("%s", problem)
            self._state_problem = problem
            raise
        if self._state_problem is not None:
            log.info("the state file %s is written again", self._state_file.path)
        self._state_problem = None

    async def _save_quietly(self) -> None:
        with contextlib.suppress(OSError):  # logged, and retried by the monitor
            await self._save()

    def runnable_types(self, commands: dict[str, Any]) -> list[str]:
        """The types whose program is found on this machine (others are refused with 422)."""
        return [name for name, argv in commands.items() if argv and find_executable(argv[0]) is not None]

    # --- helpers -------------------------------------------------------------------------------

    def _supervisor(self, spec: AgentSpec, **kwargs: Any) -> Supervisor:
        return Supervisor(self, spec, work_dir=self.work_dir_of(spec.id), log_file=self.log_path_of(spec.id), **kwargs)

    def work_dir_of(self, agent_id: str) -> Path:
        """The work directory of an agent (or pool member) of this id."""
        return self.data_dir / "work" / agent_id

    def log_path_of(self, agent_id: str) -> Path:
        """The log of an agent (or pool member) of this id."""
        return self.data_dir / "logs" / f"{agent_id}.log"

    def http_client(self) -> aiohttp.ClientSession:
        """The backend's HTTP client (:class:`Unavailable` once closed)."""
        if self._http is None or self._http.closed:
            raise Unavailable("the local backend is not running")
        return self._http

    def agentapi_binary(self) -> str:
        """The agentapi executable (:class:`Unavailable` when it is missing)."""
        return self._agentapi_binary()

    def command_of(self, spec: AgentSpec) -> list[str]:
        """The agent's command, its program as an absolute path (:class:`Rejected` when missing)."""
        return self._command(spec)

    def _records(self) -> dict[str, dict[str, Any]]:
        return {agent_id: s.record() for agent_id, s in self._agents.items()}

    def _require_started(self) -> None:
        if not self._started:
            raise Unavailable("the local backend is not running")

    def _find_agentapi(self) -> str | None:
        return locate(self.local.agentapi_binary)

    def _agentapi_binary(self) -> str:
        path = self._find_agentapi()
        if path is None:
            raise Unavailable(f"agentapi not found: local_mode.agentapi_binary is {self.local.agentapi_binary!r} "
                              f"(looked on PATH and in {cached_binary().parent}); install agentapi "
                              f"{AGENTAPI_VERSION} with `agentproxy install-agentapi` or set "
                              f"local_mode.agentapi_binary to its path")
        return path

    def _command(self, spec: AgentSpec) -> list[str]:
        """The agent's command with its program as an absolute path (agentapi would search
        only its own PATH, without the proxy's Python environment)."""
        program = find_executable(spec.command[0]) if spec.command else None
        if program is None:
            searched = executable_search_path().replace(os.pathsep, ", ")
            raise Rejected(f"agent type {spec.type!r}: program {spec.command[0] if spec.command else ''!r} of "
                           f"agents.commands.{spec.type} was not found (searched {searched})", field="agent")
        return [program, *spec.command[1:]]

    async def _monitor_loop(self) -> None:
        """Every ``sample_interval``: sample CPU and memory of every agent (enforcing memory
        limits), rotate logs that reached their cap, now and then measure work directories."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.timing.sample_interval)
            if self._state_problem is not None:
                await self._save_quietly()  # try again: the disk may have room now
            supervisors = list(self._agents.values())
            roots = {s.id: s.process.identity for s in supervisors if s.process is not None and not s.process.exited}
            now = loop.time()
            due = [s for s in supervisors if s.disk_due(now)]
            try:
                samples, sizes = await asyncio.to_thread(self._measure, roots, [(s.id, s.work_dir) for s in due],
                                                         [s.log for s in supervisors])
            except Exception:  # one bad sample must not end the monitoring of every agent
                log.exception("sampling local agents failed")
                continue
            for agent_id, sample in samples.items():
                supervisor = self._agents.get(agent_id)
                if supervisor is not None:
                    supervisor.observe(roots[agent_id], sample)
            for agent_id, (size, complete) in sizes.items():
                supervisor = self._agents.get(agent_id)
                if supervisor is not None:
                    supervisor.disk_measured(size, complete)

    def _lower_members(self, samples: Iterable[Any]) -> None:
        """Give every process of the agents' trees ``agent_nice`` once: agentapi runs its agent
        in a session (a terminal) of its own, whose autogroup the agent's start did not lower."""
        members = {member for sample in samples for member in sample.members}
        # Kept only while they run; one the kernel asked to retry is tried again next time.
        self._lowered = {member for member in members
                         if member in self._lowered or lower_priority(member[0], self.agent_nice)}

    def _measure(self, roots: dict[str, Identity], dirs: list[tuple[str, Path]],
                 logs: list[Any]) -> tuple[dict[str, Any], dict[str, tuple[int, bool]]]:
        samples = self._sampler.sample(roots)
        self._lower_members(samples.values())
        sizes = {agent_id: directory_size(path) for agent_id, path in dirs}
        for agent_log in logs:
            try:
                agent_log.rotate_if_needed()
            except OSError as exc:
                log.warning("cannot rotate %s: %s", agent_log.path, exc)
        return samples, sizes

