"""The test cluster's processes: started detached, recorded in pid files, and
stopped only when the pid still names the process that was started.

A component ``NAME`` of the cluster in ``STATE`` logs to ``STATE/logs/NAME.log``
and is recorded in ``STATE/run/NAME.pid`` (pid, start time, executable, argv).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil


def log(message: str) -> None:
    """One progress line on stderr."""
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


def pidfile(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.pid"


def logfile(state: Path, name: str) -> Path:
    return state / "logs" / f"{name}.log"


def start(state: Path, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> psutil.Process:
    """Start one component detached from us, logging to its own file."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logfile(state, name), "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=state, env=None if env is None else dict(env))
    started = psutil.Process(proc.pid)
    path = pidfile(state, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": proc.pid, "create_time": started.create_time(), "since_boot": since_boot(started),
                                "exe": argv[0], "argv": argv, "env": None if env is None else dict(env)}))
    return psutil.Process(proc.pid)


def since_boot(proc: psutil.Process) -> float:
    """Seconds from the machine's boot to the start of ``proc`` (a handle opened now). Linux
    keeps a process's start as clock ticks since boot; psutil's ``create_time`` adds the boot
    time of ``/proc/stat``, whole seconds the kernel derives from the wall clock, which step by
    one now and then as the clock is adjusted (a cluster up for half an hour was no longer
    recognised as ours, and outlived ``cluster down``). Their difference does not step."""
    return proc.create_time() - psutil.boot_time()


def record(state: Path, name: str) -> dict:
    """What the pid file of ``name`` says (raises OSError when there is none)."""
    return json.loads(pidfile(state, name).read_text())


def owned_process(state: Path, name: str) -> psutil.Process | None:
    """The live process a pid file names, only if it is still the one we started:
    a pid reused by an unrelated process is never trusted."""
    try:
        rec = record(state, name)
        proc = psutil.Process(rec["pid"])
        if "since_boot" in rec:
            if abs(since_boot(proc) - rec["since_boot"]) > 0.01:
                return None
        elif abs(proc.create_time() - rec["create_time"]) > 0.01:  # a pid file written before since_boot
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmd = proc.cmdline()
        # Just after a spawn the command line can read as empty for a moment;
        # the create time alone already ties the pid to the process we started.
        if cmd and cmd[0] != rec["exe"]:
            return None
        return proc
    except (OSError, ValueError, KeyError, psutil.Error):
        return None


def exited(proc: psutil.Process, timeout: float) -> bool:
    """Wait until ``proc`` has exited. A zombie counts once its last thread is
    gone (only then are its files, listening sockets included, closed): we are
    not its parent, and whoever is may take a while to reap it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE and len(os.listdir(f"/proc/{proc.pid}/task")) <= 1:
                return True
        except (psutil.NoSuchProcess, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


def stop(state: Path, name: str, grace: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Stop ``name`` (``sig``, then SIGKILL after ``grace`` seconds) and forget its pid file."""
    proc = owned_process(state, name)
    if proc is not None:
        log(f"stopping {name} (pid {proc.pid})")
        try:
            proc.send_signal(sig)
            if not exited(proc, grace):
                proc.kill()
                exited(proc, 5)
        except psutil.NoSuchProcess:
            pass
    pidfile(state, name).unlink(missing_ok=True)


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait(what: str, check: Callable[[], object], state: Path, name: str | None, deadline: float,
         timeout: float) -> None:
    """Poll ``check`` until it is truthy; fail with the component's log when it
    exits or ``deadline`` (a ``time.monotonic()`` value) passes."""
    while time.monotonic() < deadline:
        if check():
            log(f"{what}: healthy")
            return
        if name is not None and owned_process(state, name) is None:
            raise SystemExit(f"[cluster] error: {name} exited during start-up; its log follows\n"
                             f"{tail(logfile(state, name))}")
        time.sleep(0.25)
    text = f"\n{tail(logfile(state, name))}" if name else ""
    raise SystemExit(f"[cluster] error: {what} did not become healthy within {timeout:.0f} s{text}")


def http_get(url: str, ctx=None, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError):
        return 0, b""
