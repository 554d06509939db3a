"""The agent starter: one small helper process, in a session of its own, that starts every
agent of a proxy, so that all of them share one scheduling group.

Why: with ``kernel.sched_autogroup_enabled`` (the default of most Linux distributions)
every session is a scheduling group that weighs as much as any other, whatever the nice
values inside. An agent that led a session of its own was one such group, so each idle
agentapi (it redraws its terminal many times a second) weighed as much as the whole
proxy: with N agents the proxy got about 1/N of the CPU it asked for, and a restarted
proxy waited in the run queue for seconds per hundred agents before it could answer
``/healthz``. Started by this helper, every agent is in the helper's session (a process
group of its own each, for signals): a hundred agents or five hundred weigh together as
one program at ``agent_nice`` (the proxy lowers the helper's group when it starts it, and
the group of adopted agents when it re-adopts them). The helper's own threads keep the
proxy's priority: within the group it outweighs the agents it started, so that they never
hold up the start of the next agent. The agents keep that group after the proxy is gone,
so a restarted proxy competes with one low-priority group, not with N.

The helper is this file run as a script (standard library only, nothing of agentproxy
is imported there). It reads one JSON request per line on stdin (argv, env, cwd, log
path), starts the program and answers with its pid (or the error), reaps every agent
it started and reports each exit status. An agent is reaped only once the proxy released
it (``{"release": PID}``, after it inspected the new process): one that ended at once
stays a zombie until then, as a child of the proxy's own would, and its end is an exit
like any other rather than a process that vanished before it was seen. When its stdin closes (the proxy stopped or
died) it starts nothing more; its agents keep running and are re-adopted by the next
proxy, which gets no exit status for those (as for any re-adopted agent), and the helper
lives on, reaping them, until the last of them ended.

:func:`autogroups_enabled` says whether the helper is worth it; where it is not (no
autogroups, not Linux) agents are started directly by the proxy.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

SPAWN_TIMEOUT = 60.0
"""Seconds the helper may take to answer one start request (exec on a busy machine)."""
EXITS_KEPT = 10_000
"""Exit statuses kept for pids nobody asked about yet (the oldest go first)."""
AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"


def autogroups_enabled(switch: str = AUTOGROUP_SWITCH) -> bool:
    """True where sessions are scheduling groups (Linux with ``sched_autogroup_enabled``)."""
    try:
        with open(switch, encoding="ascii") as src:
            return src.read().strip() == "1"
    except OSError:
        return False


class StarterGone(OSError):
    """The helper ended (or never answered): nothing was started."""


class AgentStarter:
    """The proxy's side of the helper: starts it on first use (again if it ended), sends
    start requests one at a time and collects exit statuses. Thread-safe; :meth:`spawn`
    blocks, call it from a worker thread."""

    def __init__(self, python: str = sys.executable, on_start: Any = None) -> None:
        self.python = python
        self.on_start = on_start
        """Called with the helper's pid when it starts (to lower its CPU priority)."""
        self._lock = threading.Lock()
        self._helper: subprocess.Popen[bytes] | None = None
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._exits: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._exits_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The helper's pid while it runs."""
        helper = self._helper
        return helper.pid if helper is not None and helper.poll() is None else None

    def spawn(self, argv: list[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str],
              log_path: str | os.PathLike[str]) -> int:
        """Start ``argv`` through the helper (stdin /dev/null, stdout and stderr appended to
        ``log_path``, a process group of its own); its pid. ``OSError`` when it cannot be
        executed, :class:`StarterGone` when the helper is gone, ``ValueError`` for what
        :class:`subprocess.Popen` refuses (a NUL in an argument or a variable)."""
        request = json.dumps({"argv": [str(a) for a in argv], "env": dict(env), "cwd": os.fspath(cwd),
                              "log": os.fspath(log_path)})
        with self._lock:
            helper = self._running()
            assert helper.stdin is not None
            try:
                helper.stdin.write(request.encode() + b"\n")
                helper.stdin.flush()
                reply = self._replies.get(timeout=SPAWN_TIMEOUT)
            except (OSError, queue.Empty):
                reply = {"gone": True}
            if reply.get("gone"):
                self._stop_helper()
                raise StarterGone("the agent starter ended before it started the agent")
        if reply.get("invalid"):
            raise ValueError(str(reply.get("error")))
        if "pid" not in reply:
            filename = reply.get("filename")
            raise OSError(int(reply.get("errno") or 0), str(reply.get("error") or "cannot start"),
                          *((str(filename),) if filename is not None else ()))
        return int(reply["pid"])

    def release(self, pid: int) -> None:
        """Let the helper reap ``pid`` once it ends: until then a process that ended at once
        stays a zombie, so that the proxy can still inspect what it was asked to start."""
        with self._lock:
            helper = self._helper
            if helper is None or helper.stdin is None or helper.poll() is not None:
                return  # its stdin closed: it holds nothing any more
            try:
                helper.stdin.write(json.dumps({"release": int(pid)}).encode() + b"\n")
                helper.stdin.flush()
            except OSError:
                pass  # gone: the next spawn starts another

    def exit_code(self, pid: int) -> int | None:
        """The exit status of ``pid`` once the helper reaped it (taken: asked once), else None."""
        with self._exits_lock:
            return self._exits.pop(pid, None)

    def close(self) -> None:
        """Let the helper end (its agents keep running)."""
        with self._lock:
            self._stop_helper()

    def _stop_helper(self) -> None:
        helper, self._helper = self._helper, None
        if helper is None:
            return
        if helper.stdin is not None:
            try:
                helper.stdin.close()
            except OSError:
                pass
        # It ends by itself once its last agent ended (see _Helper.serve): reaped then.
        threading.Thread(target=helper.wait, name="agent starter reaper", daemon=True).start()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._helper is not None and self._helper.poll() is None:
            return self._helper
        self._stop_helper()
        self._replies = queue.Queue()
        # -I: the helper imports nothing from the environment's paths; it needs the standard library alone.
        helper = subprocess.Popen([self.python, "-I", __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True,
                                  cwd="/")  # it holds no directory of anybody's
        self._helper = helper
        threading.Thread(target=self._read, args=(helper, self._replies), name="agent starter", daemon=True).start()
        if self.on_start is not None:
            self.on_start(helper.pid)
        return helper

    def _read(self, helper: subprocess.Popen[bytes], replies: queue.Queue[dict[str, Any]]) -> None:
        assert helper.stdout is not None
        for line in helper.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "exited" in message:
                with self._exits_lock:
                    self._exits[int(message["exited"])] = int(message["code"])
                    while len(self._exits) > EXITS_KEPT:
                        self._exits.popitem(last=False)
            else:
                replies.put(message)
        replies.put({"gone": True})


# --- the helper itself (run as a script: standard library only) ----------------------------------

class _Helper:
    """The helper's side: starts what it is asked to, reaps it, reports pids and exit statuses."""

    def __init__(self) -> None:
        self.out = sys.stdout
        self.out_lock = threading.Lock()
        self.changed = threading.Condition()
        # Kept by pid, not counted: the child of a failed exec is reaped by Popen, and a count
        # would then say "none left" while agents still run.
        self.live: set[int] = set()
        """Agents started and not reaped yet."""
        self.held: set[int] = set()
        """Agents the proxy has not released yet (see :meth:`AgentStarter.release`): one that
        ended at once stays a zombie until then, so that the proxy can still inspect it."""
        self.starting = False
        """A Popen is under way: a child that is no agent yet may be a zombie meanwhile."""

    def send(self, message: dict[str, Any]) -> None:
        with self.out_lock:
            try:
                self.out.write(json.dumps(message) + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass  # the proxy is gone: nobody to tell

    def reap(self) -> None:
        """Reap each agent once it ended and the proxy released it, and report its exit status."""
        while True:
            with self.changed:
                while not self.live and not self.starting:
                    self.changed.wait()
            try:
                # Which child ended, without reaping it yet: it may be one the proxy still holds.
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:  # starting, not forked yet
                with self.changed:
                    self.changed.wait(0.05)
                continue
            pid = ended.si_pid if ended is not None else 0
            with self.changed:
                ours = pid in self.live
                if (ours and pid in self.held) or (not ours and self.starting):
                    # Held by the proxy, or the child of a Popen under way (which reaps it when
                    # its exec failed, or makes it an agent): once that changed, again.
                    self.changed.wait(0.01)
                    continue
            try:
                _, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            with self.changed:
                self.live.discard(pid)
                self.changed.notify_all()
            if ours:
                self.send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def start(self, request: dict[str, Any]) -> None:
        """Start the requested program and report its pid (OSError, ValueError... when it cannot be)."""
        fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            with self.changed:
                self.starting = True
                self.changed.notify_all()
            try:
                popen = subprocess.Popen(request["argv"], stdin=subprocess.DEVNULL, stdout=fd,
                                         stderr=subprocess.STDOUT, cwd=request["cwd"], env=request["env"],
                                         process_group=0, close_fds=True)
                popen.returncode = 0  # the reaper thread waits for it, not Popen
                with self.changed:
                    self.live.add(popen.pid)
                    self.held.add(popen.pid)
            finally:
                with self.changed:
                    self.starting = False
                    self.changed.notify_all()
        finally:
            os.close(fd)
        self.send({"pid": popen.pid})

    def release(self, pid: int) -> None:
        with self.changed:
            self.held.discard(pid)
            self.changed.notify_all()

    def serve(self, requests: Any) -> None:
        """One request per line of ``requests``, until it ends; then until the last agent ended."""
        threading.Thread(target=self.reap, daemon=True).start()
        for line in requests:
            try:
                request = json.loads(line)
                if isinstance(request, dict) and "release" in request:
                    self.release(int(request["release"]))  # answered by nothing: no reply is awaited
                    continue
            except (ValueError, TypeError):
                continue  # a line that is not JSON, or a release without a pid: nobody waits for it
            try:
                self.start(request)
            except OSError as exc:
                self.send({"error": exc.strerror or str(exc), "errno": exc.errno or 0,
                           "filename": None if exc.filename is None else os.fsdecode(exc.filename)})
            except (ValueError, KeyError, TypeError) as exc:  # what Popen refuses (a NUL in an argument, ...)
                self.send({"error": str(exc), "invalid": True})
        # stdin closed: the proxy stopped, and holds nothing any more. The agents keep running,
        # and this helper with them until the last one ended: were it gone, each agent's process
        # group would be orphaned, and the kernel hangs up (SIGHUP) an orphaned group that has a
        # stopped member.
        with self.changed:
            self.held.clear()
            self.changed.notify_all()
            while self.live:
                self.changed.wait()


if __name__ == "__main__":
    _Helper().serve(sys.stdin)
