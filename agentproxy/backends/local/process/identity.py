"""Telling one process from any later process that gets the same pid.

A pid alone never names a process here: every process is known by its
:class:`Identity` (pid, start time and command line), and :func:`same_process`
is the one check that a process still is the one recorded, so that a pid the
kernel reused for an unrelated program is left alone.

A start time is seconds since the machine booted (:func:`start_since_boot`), not a wall-clock
time: on Linux psutil's ``create_time`` is the kernel's start tick plus ``/proc/stat``'s boot
time, whole seconds the kernel derives from the wall clock, which step by one now and then as
the clock is adjusted (NTP). Compared as wall-clock times, every recorded agent would then look
like another process, and a proxy would neither re-adopt nor sample nor stop its agents.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

START_TOLERANCE = 0.05
"""Seconds two start times of one process may differ by (both are rounded by the kernel)."""


def start_since_boot(proc: psutil.Process) -> float:
    """Seconds from the machine's boot to the start of ``proc`` (a handle opened now): its
    ``create_time`` less the boot time psutil added to it, read again at once."""
    return proc.create_time() - psutil.boot_time()


@dataclass(frozen=True)
class Identity:
    """What tells one process from any later process that gets the same pid."""

    pid: int
    started: float
    """Seconds from the machine's boot to the process's start (see :func:`start_since_boot`)."""
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy: the start since boot, and as a wall-clock ``create_time`` for
        readers of the records (and versions of agentproxy) that know only that."""
        return {"pid": self.pid, "started": self.started, "create_time": self.started + psutil.boot_time(),
                "cmdline": list(self.cmdline)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Identity:
        """The identity :meth:`to_dict` wrote (``ValueError`` when it is not one). A record of an
        earlier version has only the wall-clock ``create_time``: it is taken against the boot
        time of now, as it was compared before."""
        try:
            started = (float(data["started"]) if "started" in data
                       else float(data["create_time"]) - psutil.boot_time())
            return cls(int(data["pid"]), started, tuple(str(a) for a in data["cmdline"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a process identity: {exc}") from None


def identify(pid: int, fallback_cmdline: Iterable[str] = (), settle: float = 0.5) -> Identity | None:
    """The identity of the live process ``pid``, or None when there is none.

    A process that is still in the middle of exec (Popen returns as soon as exec began)
    shows an empty command line for a moment: it is read again for up to ``settle``
    seconds. A process that already exited (a zombie) has none at all;
    ``fallback_cmdline`` stands in then.
    """
    deadline = time.monotonic() + settle
    try:
        proc = psutil.Process(pid)
        started = start_since_boot(proc)
        while True:
            try:
                cmdline = tuple(proc.cmdline())
            except psutil.ZombieProcess:
                cmdline = ()
                break
            if cmdline or time.monotonic() >= deadline:
                break
            time.sleep(0.001)
    except psutil.Error:
        return None
    return Identity(pid, started, cmdline or tuple(fallback_cmdline))


def same_process(proc: psutil.Process, started: float, cmdline: Sequence[str] | None = None) -> bool:
    """True when ``proc`` (a handle opened now) is the process that started at ``started``
    (seconds since boot) and, when ``cmdline`` is given, runs that command line: the one check,
    everywhere, that a recorded process is still the one recorded and not a later user of its pid."""
    try:
        if abs(start_since_boot(proc) - started) > START_TOLERANCE:
            return False
        return cmdline is None or tuple(proc.cmdline()) == tuple(cmdline)
    except psutil.Error:
        return False


def _opened(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def find_process(identity: Identity) -> psutil.Process | None:
    """The live process with this identity: same pid, start time and command line, not
    exited. None for anything else, above all a reused pid."""
    proc = _opened(identity.pid)
    if proc is None or not same_process(proc, identity.started, identity.cmdline) or not alive(proc):
        return None
    return proc


def process_of(ref: tuple[int, float]) -> psutil.Process | None:
    """The live process ``(pid, started)`` names, or None (also when the pid was reused)."""
    proc = _opened(ref[0])
    return proc if proc is not None and same_process(proc, ref[1]) and alive(proc) else None


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` (the very process, not a reuse of its pid) runs; a zombie does not."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap_if_ours(identity: Identity) -> None:
    """Reap the recorded process if it is an exited child of this very process (a backend
    of this process started it, and a later one found it dead): nobody else can."""
    proc = _opened(identity.pid)
    try:
        if (proc is None or parent_pid(proc) != os.getpid() or proc.status() != psutil.STATUS_ZOMBIE
                or not same_process(proc, identity.started)):
            return
        os.waitpid(identity.pid, os.WNOHANG)
    except (psutil.Error, ChildProcessError):
        pass


def parent_pid(proc: psutil.Process) -> int | None:
    """The pid of the parent of ``proc`` (None when it is gone)."""
    try:
        return proc.ppid()
    except psutil.Error:
        return None
