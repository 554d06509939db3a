"""What the local backend's tests share: settings for real agentapi and the test programs, ports,
specs, waits, the check that nothing is left behind, and a process's autogroup."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agentproxy.backends.base import AgentState, AgentStatus
from agentproxy.backends.local.backend import LocalBackend
from agentproxy.backends.local.process import starter as starter_module
from agentproxy.backends.local.process.priority import autogroup_nice
from agentproxy.settings import Settings
from agentproxy.settings.schema import SupervisionSettings
from agentproxy.spec import AgentSpec, build_spec
from testenv.ports import free_block

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs.py"

FAST = SupervisionSettings(start_timeout=15.0, stop_grace=1.5, leftover_grace=0.5, backoff_initial=0.1, backoff_max=0.4,
              stable_after=30.0, crash_loop_failures=4, crash_loop_window=30.0, sample_interval=0.2,
              disk_interval=0.3)
"""Supervision timings short enough for tests, long enough for a loaded 2-core machine."""

AGENT_NICE = 0
"""The tests' agents run at the tests' own CPU priority (``local_mode.agent_nice``), not below it
as by default: what competes with them here is not their proxy but the other pytest-xdist
worker and the rest of the machine, against which an agent at nice 10 (its session's
autogroup too) gets about a tenth of a core. Real Claude Code then took minutes to start
rather than seconds. The lowering itself is proven where it is asked for
(test_priority.py, test_restart_adoption.py)."""

PROGRAM_MODES: dict[str, list[str]] = {
    "serve": ["serve"],
    "crash": ["crash", "3"],
    "crash-twice": ["crash-first", "2", "4"],
    "tree": ["tree"],
    "hog": ["hog", "200"],
    "env": ["env"],
    "write": ["write", "300000"],
}

def port_block() -> tuple[int, int]:
    """A block of 64 free ports of this test process's own (:mod:`testenv.ports`)."""
    return free_block(64)


def make_settings(data_dir: Path, launcher: str, ports: tuple[int, int]) -> Settings:
    settings = Settings()
    settings.local_mode.agentapi_binary = launcher
    settings.local_mode.ports.start, settings.local_mode.ports.end = ports
    settings.local_mode.data_dir = str(data_dir)
    settings.local_mode.supervision = dataclasses.replace(FAST)
    settings.local_mode.agent_nice = AGENT_NICE
    for name, args in PROGRAM_MODES.items():
        settings.agents.commands[name] = ["python3", str(PROGRAMS), *args]
    settings.agents.commands["missing"] = ["no-such-program-anywhere", "--flag"]
    return settings


def spec(settings: Settings, agent_id: str, agent_type: str = "serve", session: str = "s1", **kwargs: Any) -> AgentSpec:
    return build_spec(settings, session, agent_id, agent_type, **kwargs)


async def shut_down(instance: LocalBackend) -> None:
    """Delete every agent of a backend (if it runs) and close it."""
    if instance._started:
        for state in await instance.list():
            await instance.delete(state.session, state.id)
        await instance.close()


async def wait_for(backend: LocalBackend, agent_id: str, check: Callable[[AgentState], bool], *,
                   session: str = "s1", timeout: float = 20.0) -> AgentState:
    """Poll the agent until ``check`` holds (fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    state = await backend.get(session, agent_id)
    while not check(state):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last state: {state.status} {state.reason} {state.message} "
                                 f"restarts={state.restarts} {state.details}")
        await asyncio.sleep(0.05)
        state = await backend.get(session, agent_id)
    return state


async def wait_ready(backend: LocalBackend, agent_id: str, **kwargs: Any) -> AgentState:
    return await wait_for(backend, agent_id, lambda s: s.status is AgentStatus.READY, **kwargs)


async def wait_for_log(backend: LocalBackend, agent_id: str, text: str, *, session: str = "s1",
                       timeout: float = 10.0) -> str:
    """The agent's log once it contains ``text`` (output may arrive after readiness)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = await backend.logs(session, agent_id, tail_lines=500)
        if text in logs:
            return logs
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the log of {agent_id}:\n{logs}")
        await asyncio.sleep(0.05)


async def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def processes_in(directory: Path) -> list[psutil.Process]:
    """Live processes whose working directory is inside ``directory``."""
    found = []
    prefix = str(directory)
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd, status = proc.info.get("cwd"), proc.info.get("status")
        if cwd and (cwd == prefix or cwd.startswith(prefix + os.sep)) and status != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def zombie_children() -> list[psutil.Process]:
    """Children of the test run that exited and were never reaped."""
    zombies = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child)
        except psutil.NoSuchProcess:
            pass
    return zombies


async def assert_nothing_left(directory: Path, timeout: float = 5.0) -> None:
    """No process runs in ``directory`` and the test run has no zombie children (a process
    being killed may need a moment to be gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left, zombies = processes_in(directory), zombie_children()
        if not left and not zombies:
            return
        if time.monotonic() > deadline:
            described = [(p.pid, _cmdline(p)) for p in left]
            unreaped = [(z.pid, _name(z)) for z in zombies]  # a zombie keeps its name, not its command line
            raise AssertionError(f"left running: {described}; zombies: {unreaped}")
        await asyncio.sleep(0.05)


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return "?"


STARTER_MARK = "AGENTPROXY_TEST_STARTERS"
"""A variable each test sets to a value of its own: the agent starters it starts (in this process
or in a proxy it runs) inherit it, and are told apart by it from anybody else's."""
STARTER_SCRIPT = str(Path(starter_module.__file__).resolve())


def starters_marked(mark: str) -> list[psutil.Process]:
    """The running agent starters (see agentproxy.backends.local.process.starter) that carry ``mark``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if cmdline[1:] != ["-I", STARTER_SCRIPT]:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(STARTER_MARK) == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def end_starters(mark: str, timeout: float = 10.0) -> list[int]:
    """Wait for the agent starters of a test (``mark``) to end, as each does once its proxy
    side closed and its last agent ended; kill any still running after ``timeout`` seconds,
    by pid. The pids that had to be killed."""
    deadline = time.monotonic() + timeout
    while (left := starters_marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for proc in left:
        try:
            proc.kill()
            if proc.ppid() == os.getpid():  # a starter of this process's own backend: not a zombie of ours
                os.waitpid(proc.pid, 0)
        except (psutil.Error, ChildProcessError):
            pass  # gone meanwhile, or reaped by its backend's side
    return [proc.pid for proc in left]


def autogroup_of(pid: int) -> int | None:
    """The nice value of the autogroup of ``pid``, None where the kernel has no autogroups."""
    try:
        with open(f"/proc/{pid}/autogroup", encoding="ascii") as src:
            return autogroup_nice(src.read())
    except OSError:
        return None


OURS = os.getpriority(os.PRIO_PROCESS, 0)
"""The test run's own nice value (``nice -n 19`` on a shared machine): what it starts has it too,
and a priority is never raised, so a process lowered to ``n`` ends at ``max(OURS, n)``."""


def lowered(nice: int) -> int:
    """What a lowering to ``nice`` gives a process this test run starts (see :data:`OURS`)."""
    return max(OURS, nice)


def thread_nices(pid: int) -> set[int]:
    """The nice values of every thread of ``pid``."""
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def kernel_allows(change) -> bool:
    """``change()`` until it is done: the kernel takes an autogroup change at most ten times a
    second from anyone unprivileged on the machine, so another program may have just had its turn."""
    deadline = time.monotonic() + 30
    while not change():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
