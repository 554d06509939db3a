"""Telling one process from any later process that gets the same pid.

A pid alone never names a process here: every process is known by its
:class:`Identity` (pid, start time and command line), and :func:`same_process`
is the one check that a process still is the one recorded, so that a pid the
kernel reused for an unrelated program is left alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

CREATE_TIME_TOLERANCE = 0.05
"""Seconds two start times of one process may differ by (both are rounded by the kernel)."""


@dataclass(frozen=True)
class Identity:
    """What tells one process from any later process that gets the same pid."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {"pid": self.pid, "create_time": self.create_time, "cmdline": list(self.cmdline)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Identity:
        """The identity :meth:`to_dict` wrote (``ValueError`` when it is not one)."""
        try:
            return cls(int(data["pid"]), float(data["create_time"]), tuple(str(a) for a in data["cmdline"]))
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
        create_time = proc.create_time()
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
    return Identity(pid, create_time, cmdline or tuple(fallback_cmdline))


def same_process(proc: psutil.Process, create_time: float, cmdline: Sequence[str] | None = None) -> bool:
    """True when ``proc`` (a handle opened now) is the process that started at ``create_time``
    and, when ``cmdline`` is given, runs that command line: the one check, everywhere, that a
    recorded process is still the one recorded and not a later user of its pid."""
    try:
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
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
    if proc is None or not same_process(proc, identity.create_time, identity.cmdline) or not alive(proc):
        return None
    return proc


def process_of(ref: tuple[int, float]) -> psutil.Process | None:
    """The live process ``(pid, create_time)`` names, or None (also when the pid was reused)."""
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
                or not same_process(proc, identity.create_time)):
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
