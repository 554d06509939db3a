"""Warm pools of the local backend: members are prepared work directories with a waiting launcher.

A member is a generated agent id with its work directory (``work/<id>``), its log, an agentapi
port and a binding port of ``local_mode.ports``, and a launcher (:mod:`agentproxy.launcher`)
that listens on the binding port for its token (a 0600 file under ``pool/`` of the data_dir,
read by the proxy and the launcher alone). A claim posts the agent's environment, credentials
and first message to it; the launcher starts agentapi, and the backend supervises the launcher
as the agent's process from then on. Members are kept in ``pool.json`` beside the state file:
written before anything of a member is made, so that a proxy that dies half-way finds what it
made and removes it (by the member's process tag). They are in no session of a user, so no list
shows them and no limit counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from ...agenthome import uses_claude
from ...launch import agent_launch
from ...launcher import BIND_PATH, ENTRY_MODULE, HEALTH_PATH
from ...naming import generate_agent_id
from ...pools import FAILED, READY, WARMING, Decision, Member, counts, decide, refill_plan
from ...privatefile import write_private
from ...spec import AgentSpec
from ..base import MetricSample, Unavailable
from ..pooling import ConfiguredPool, member_spec, pool_shapes, spec_shape
from .ports import HOST
from .process import TAG_VARIABLE, AgentProcess, Identity, agent_environment, spawn_in_thread, stop_tree
from .state import write_atomically

if TYPE_CHECKING:
    from .backend import LocalBackend

log = logging.getLogger(__name__)

POOL_FILE = "pool.json"
TOKEN_DIR = "pool"
CHECK_INTERVAL = 2.0
"""Seconds between two looks at every member (still running? waiting?) and at the pools' sizes."""
REFILL_AFTER_CLAIM = 1.0
"""Seconds from a claim to the refill it asks for: the claimed agent starts first, without
a new member's start competing with it for the CPU."""
WARM_TIMEOUT = 60.0
"""Seconds a member may take to listen for its binding before it is replaced."""


@dataclass
class LocalMember:
    """One member of a local pool."""

    id: str
    pool: str
    shape: str
    tag: str
    created_at: datetime
    port: int | None = None
    bind_port: int | None = None
    state: str = WARMING
    identity: Identity | None = None
    process: AgentProcess | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """What ``pool.json`` keeps of it (no token: that is in its own file)."""
        identity = self.process.identity if self.process is not None else self.identity
        return {"pool": self.pool, "shape": self.shape, "tag": self.tag, "created_at": self.created_at.isoformat(),
                "port": self.port, "bind_port": self.bind_port,
                "process": identity.to_dict() if identity is not None else None}

    def view(self) -> Member:
        """The member as the pure refill plan sees it."""
        return Member(self.id, self.pool, self.shape, self.state)


class LocalPools:
    """The members of every pool of one local backend, refilled in the background."""

    def __init__(self, backend: LocalBackend, pools: tuple[ConfiguredPool, ...]) -> None:
        self.backend = backend
        self.pools = {p.name: p for p in pools}
        self.members: dict[str, LocalMember] = {}
        self.path = backend.data_dir / POOL_FILE
        self.token_dir = backend.data_dir / TOKEN_DIR
        self.claims = 0
        """Creates served by a member since the start."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy: set[asyncio.Task[None]] = set()
        self._leaving: dict[str, LocalMember] = {}
        """Members being removed: still in ``pool.json`` until they are gone, so that a proxy that
        stops meanwhile removes them next time."""
        self._removals: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Take over the members of ``pool.json`` still waiting; remove every other (half-made,
        ended, of a pool or shape no longer configured); then keep the pools full."""
        records = await asyncio.to_thread(self._load)
        found: list[LocalMember] = []
        for member_id, record in records.items():
            try:
                member = LocalMember(id=member_id, pool=str(record["pool"]), shape=str(record["shape"]),
                                     tag=str(record["tag"]), created_at=datetime.fromisoformat(record["created_at"]),
                                     port=record.get("port"), bind_port=record.get("bind_port"),
                                     identity=Identity.from_dict(record["process"]) if record.get("process") else None)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("pool member %s of %s is unreadable (%s); dropped", member_id, self.path, exc)
                continue
            found.append(member)
        processes = await asyncio.to_thread(
            AgentProcess.adopt_all, [m.identity for m in found if m.identity is not None])
        by_identity = iter(processes)
        for member in found:
            self.members[member.id] = member
            member.process = next(by_identity) if member.identity is not None else None
            ports = [p for p in (member.port, member.bind_port) if isinstance(p, int)]
            kept = member.process is not None and len(ports) == 2 and all(
                self.backend.ports.claim(p, member.id) for p in ports)
            if kept and await self._waiting(member):
                member.state = READY
            else:
                member.state = FAILED  # half-made or ended: the refill removes it by its tag
        if found:
            log.info("pool members found: %d waiting, %d to remove", sum(m.state == READY for m in found),
                     sum(m.state != READY for m in found))
        self._task = asyncio.get_running_loop().create_task(self._keep(), name="local pools")

    async def close(self) -> None:
        """Stop refilling; members keep waiting for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._busy):
            task.cancel()
        if self._busy:
            await asyncio.gather(*self._busy, return_exceptions=True)
        if self._removals:  # finished rather than cut off: nothing half-removed is left running
            await asyncio.gather(*self._removals, return_exceptions=True)
        with contextlib.suppress(OSError):
            await self._save()

    @property
    def empty(self) -> bool:
        """No member, and none being made or removed (a drained pool)."""
        return not self.members and not self._leaving and not self._busy and not self._removals

    # --- claims ---------------------------------------------------------------------------------

    def take(self, spec: AgentSpec) -> tuple[Decision, LocalMember | None]:
        """The decision for ``spec`` (a create naming no id) and the ready member taken for it."""
        ready: dict[str, int] = {}
        for member in self.members.values():
            if member.state == READY and member.shape == self.pools.get(member.pool, _NONE).shape:
                ready[member.pool] = ready.get(member.pool, 0) + 1
        decision = decide(names_id=False, shape=spec_shape(spec), pool_shapes=pool_shapes(tuple(self.pools.values())),
                          ready=ready)
        if decision.pool is None or ready.get(decision.pool, 0) == 0:
            if decision.pool is not None:
                self.wake()
            return decision, None
        member = min((m for m in self.members.values() if m.pool == decision.pool and m.state == READY
                      and m.shape == self.pools[decision.pool].shape), key=lambda m: m.created_at)
        del self.members[member.id]  # no other create can take it now (one event loop)
        asyncio.get_running_loop().call_later(REFILL_AFTER_CLAIM, self.wake)
        return decision, member

    def give_back(self, member: Any) -> None:
        """A member taken for a create refused before its claim began: ready again."""
        self.members[member.id] = member
        self.wake()

    def discard(self, member: Any) -> None:
        """A member whose claim failed: ended and removed in the background; replaced."""
        member.state = FAILED
        self.members[member.id] = member
        self.wake()

    async def bind(self, member: LocalMember, env: dict[str, str]) -> None:
        """Post the agent's environment to the member's launcher (raises :class:`Unavailable`
        when it does not take it)."""
        token = await asyncio.to_thread(self._token_path(member.id).read_text)
        client = self.backend.http_client()
        try:
            async with client.post(f"http://{HOST}:{member.bind_port}{BIND_PATH}", json={"env": env},
                                   headers={"Authorization": f"Bearer {token.strip()}"},
                                   timeout=aiohttp.ClientTimeout(total=30)) as response:
                if response.status != 200:
                    raise Unavailable(f"pool member {member.id} refused its binding ({response.status})")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"pool member {member.id} did not take its binding: {exc}") from None

    def claimed(self, member: LocalMember) -> None:
        """The member is an agent now: its binding port and token go, its record too."""
        self.claims += 1
        if member.bind_port is not None:
            self.backend.ports.release(member.bind_port, member.id)
        with contextlib.suppress(OSError):
            self._token_path(member.id).unlink()
        self._save_soon()

    # --- keeping the pools full ---------------------------------------------------------------

    def wake(self) -> None:
        """Look at the pools now rather than at the next check."""
        self._wake.set()

    async def _keep(self) -> None:
        while True:
            try:
                await self._check()
                await self._refill()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the pools for good
                log.exception("refilling the pools failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_INTERVAL)
            self._wake.clear()

    async def _check(self) -> None:
        """Members whose launcher ended, or that never came up, are failed (and replaced)."""
        for member in list(self.members.values()):
            if member.state == FAILED or member.process is None:
                continue
            if member.process.poll():
                member.state = FAILED
            elif member.state == WARMING and (datetime.now(UTC) - member.created_at).total_seconds() > WARM_TIMEOUT:
                log.warning("pool member %s did not wait for its binding within %g s; replacing it", member.id,
                            WARM_TIMEOUT)
                member.state = FAILED

    async def _refill(self) -> None:
        by_pool: dict[str, list[LocalMember]] = {}
        for member in self.members.values():
            by_pool.setdefault(member.pool, []).append(member)
        for name in set(by_pool) | set(self.pools):
            pool = self.pools.get(name)
            members = by_pool.get(name, [])
            busy = [m for m in members if m.state == WARMING and m.process is None]  # being made now
            plan = refill_plan(pool.size if pool else 0, pool.shape if pool else "", [m.view() for m in members
                                                                                      if m not in busy])
            for member_id in plan.remove:
                gone = self.members.pop(member_id, None)
                if gone is not None:
                    self._leaving[gone.id] = gone
                    self._start_removal(gone)
            if pool is not None:
                for _ in range(plan.make - len(busy)):
                    self._spawn_task(self._make(pool), f"make a member of pool {name}")

    def _start_removal(self, member: LocalMember) -> None:
        async def remove() -> None:
            try:
                await self._remove(member)
            finally:
                self._leaving.pop(member.id, None)
            with contextlib.suppress(OSError):
                await self._save()

        task = asyncio.get_running_loop().create_task(remove(), name=f"remove pool member {member.id}")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._busy.add(task)
        task.add_done_callback(self._busy.discard)

    async def _make(self, pool: ConfiguredPool) -> None:
        """Make one member: its record first (so a crash leaves something to clean up), then
        its ports, token, work directory and waiting launcher."""
        backend = self.backend
        member = LocalMember(id=generate_agent_id(), pool=pool.name, shape=pool.shape, tag=secrets.token_hex(12),
                             created_at=datetime.now(UTC))
        self.members[member.id] = member
        try:
            await self._save()
            spec = member_spec(backend.settings, pool.pool, member.id)
            member.port = await backend.ports.allocate(member.id)
            member.bind_port = await backend.ports.allocate(member.id)
            work_dir = backend.work_dir_of(member.id)
            await asyncio.to_thread(backend.log_path_of(member.id).parent.mkdir, parents=True, exist_ok=True)
            token = secrets.token_urlsafe(32)
            token_path = self._token_path(member.id)
            await asyncio.to_thread(write_private, token_path, token)
            launch = agent_launch(spec, port=member.port, work_dir=str(work_dir),
                                  program=backend.agentapi_binary(), command=backend.command_of(spec))
            argv = [sys.executable, "-m", ENTRY_MODULE, "--bind", f"{HOST}:{member.bind_port}",
                    "--token-file", str(token_path), "--work-dir", str(work_dir),
                    *(["--prestart"] if self.prestarts(pool, spec) else []), "--", *launch.argv]
            env = agent_environment({}, {TAG_VARIABLE: member.tag})
            async with backend.launches:
                member.process = await spawn_in_thread(argv, env=env, cwd=work_dir,
                                                       log_path=backend.log_path_of(member.id), tag=member.tag,
                                                       table=backend.table, nice=backend.agent_nice)
                await member.process.settle()
            await self._save()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WARM_TIMEOUT
            while not await self._waiting(member):
                if member.process.poll() or loop.time() > deadline or self.members.get(member.id) is not member:
                    raise OSError("its launcher did not wait for a binding")
                await asyncio.sleep(0.05)
            member.state = READY
        except asyncio.CancelledError:
            member.state = FAILED  # the next start removes what was made by its tag
            raise
        except Exception as exc:  # any failure fails this member alone
            log.warning("making a member of pool %s failed: %s", pool.name, exc)
            member.state = FAILED  # replaced at the next check, not at once: a failure may last
            if self.members.get(member.id) is not member:  # removed meanwhile: nothing else removes what was made
                await self._remove(member)

    async def _remove(self, member: LocalMember) -> None:
        """End a member's processes (by its tag too) and remove its work directory, log, token and ports."""
        backend = self.backend
        await stop_tree(member.process, tag=member.tag, grace=backend.timing.leftover_grace, table=backend.table)
        if member.process is not None:
            member.process.forget()
        for port in (member.port, member.bind_port):
            if isinstance(port, int):
                backend.ports.release(port, member.id)
        await asyncio.to_thread(shutil.rmtree, backend.work_dir_of(member.id), True)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.unlink, backend.log_path_of(member.id))
        with contextlib.suppress(OSError):
            await asyncio.to_thread(os.unlink, self._token_path(member.id))

    async def _waiting(self, member: LocalMember) -> bool:
        """True when the member's launcher answers that it waits for its binding."""
        try:
            async with self.backend.http_client().get(f"http://{HOST}:{member.bind_port}{HEALTH_PATH}",
                                                      timeout=aiohttp.ClientTimeout(total=5)) as response:
                return response.status == 200 and (await response.json()).get("state") == "waiting"
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            return False

    # --- what the state and the metrics see -----------------------------------------------------

    def metrics(self) -> list[MetricSample]:
        """``agentproxy_pool_members{pool,state}`` and the claims served."""
        found = counts((m.view() for m in self.members.values()),
                       {name: pool.shape for name, pool in self.pools.items()})
        out = [MetricSample("pool_members", "Members of each warm pool by state (warming, ready, failed, stale).",
                            "gauge", float(n), (("pool", pool), ("state", state)))
               for (pool, state), n in sorted(found.items())]
        out.append(MetricSample("pool_claims_total", "Creates served by a warm pool member.", "counter",
                                float(self.claims)))
        return out

    @staticmethod
    def prestarts(pool: ConfiguredPool, spec: AgentSpec) -> bool:
        """Whether the members of ``pool`` run their program before their claim: as its
        ``prestart`` says, but never Claude Code here, whose home (with the owner's key and
        files) the proxy prepares at the claim, before the program may start."""
        return pool.pool.prestart and not uses_claude(spec.command)

    def _token_path(self, member_id: str) -> Path:
        return self.token_dir / f"{member_id}.token"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.error("%s is unreadable (%s); its members are not taken over", self.path, exc)
            return {}
        members = data.get("members") if isinstance(data, dict) else None
        return {str(k): v for k, v in members.items() if isinstance(v, dict)} if isinstance(members, dict) else {}

    async def _save(self) -> None:
        """Write ``pool.json`` (one write at a time: they share a temporary file name)."""
        async with self._write_lock:
            records = {m.id: m.record() for m in (*self.members.values(), *self._leaving.values())}
            text = json.dumps({"version": 1, "members": records}, indent=1, sort_keys=True) + "\n"
            await asyncio.to_thread(write_atomically, self.path, text)

    def _save_soon(self) -> None:
        async def save() -> None:
            try:
                await self._save()
            except OSError as exc:
                log.error("cannot write %s: %s", self.path, exc)
        self._spawn_task(save(), "save the pools")


class _NoPool:
    shape = ""


_NONE = _NoPool()
