"""The leader of an agent's process tree: the agentapi server, spawned or re-adopted,
watched until it exits, and signalled only while it still holds its pid."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Mapping

import psutil

from .identity import Identity, alive, find_process, identify, parent_pid, reap_if_ours, same_process
from .priority import lower_priority
from .starter import AgentStarter

EXIT_REPORT_WAIT = 5.0
"""Seconds to wait for the starter's report of the exit status of a process it started."""
PRIORITY_RETRIES = 30
"""Attempts at lowering a new agent's priority that the kernel asked to retry (0.1 s apart)."""


class AgentProcess:
    """The leader of an agent's process tree (the agentapi server), spawned here or
    re-adopted from the state file.

    The leader runs in a session and process group of its own, so that signals of
    the proxy's terminal never reach it and it can be signalled with all of its group.
    A leader that is a child of this process is reaped here (:meth:`wait` gives its
    exit code); a re-adopted one is watched until it is gone (no exit code).
    """

    def __init__(self, proc: psutil.Process, identity: Identity, *, adopted: bool) -> None:
        self.proc = proc
        self.identity = identity
        self.adopted = adopted
        self.child = parent_pid(proc) == os.getpid()
        self.exited = False
        self.exit_code: int | None = None
        self.starter: AgentStarter | None = None
        """The helper that started the process and reaps it (None: a child of ours, or adopted)."""
        self._watch: asyncio.Task[int | None] | None = None

    @property
    def pid(self) -> int:
        return self.identity.pid

    @classmethod
    def spawn(cls, argv: list[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str],
              log_path: str | os.PathLike[str], nice: int = 0, starter: AgentStarter | None = None) -> AgentProcess:
        """Start ``argv``: stdin /dev/null (agentapi reads a piped stdin to its end before it
        starts), stdout and stderr appended to ``log_path``, at the CPU priority ``nice`` (see
        :mod:`.priority`; :meth:`deprioritize` completes it). With a ``starter`` the helper of
        :mod:`.starter` starts it, in the helper's session (one scheduling group for every
        agent) and a process group of its own, and reports its exit status; without, it is a
        child of this process in a new session. Raises ``OSError`` when the program cannot be
        executed."""
        if starter is not None:
            pid = starter.spawn(argv, env=env, cwd=cwd, log_path=log_path)
        else:
            pid = cls._popen(argv, env=env, cwd=cwd, log_path=log_path)
        try:
            # At once: what the program starts from now on inherits the priority.
            lower_priority(pid, nice)
            # Read once, without waiting: the command line may still be empty (see settle()).
            identity = identify(pid, settle=0) or Identity(pid, time.time(), ())
            # Until released, the helper leaves a process that ended at once unreaped, as a
            # child of ours is: it is inspected here all the same, and its end is an exit as any.
            proc = psutil.Process(pid)
        except psutil.Error as exc:  # neither reaped yet: it always has a process entry
            raise OSError(f"cannot inspect process {pid}: {exc}") from None
        finally:
            if starter is not None:
                starter.release(pid)
        process = cls(proc, identity, adopted=False)
        process.child = starter is None
        process.starter = starter
        return process

    @staticmethod
    def _popen(argv: list[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str],
               log_path: str | os.PathLike[str]) -> int:
        """Start ``argv`` as a child of this process in a new session; its pid."""
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                     cwd=cwd, env=dict(env), start_new_session=True, close_fds=True)
        finally:
            os.close(fd)
        # This module reaps the child itself (see poll()), also when a backend started
        # later in this same process re-adopts it. A Popen that believes the child is still
        # its own would reap it when garbage-collected (the exit code would be lost) or warn
        # that it was never waited for; a return code tells it that there is nothing left to do.
        popen.returncode = 0
        return popen.pid

    @classmethod
    def adopt(cls, identity: Identity) -> AgentProcess | None:
        """The process of a state-file record, if it still runs with that identity."""
        proc = find_process(identity)
        if proc is None:
            reap_if_ours(identity)
            return None
        return cls(proc, identity, adopted=True)

    @classmethod
    def adopt_all(cls, identities: list[Identity], nice: int = 0) -> list[AgentProcess | None]:
        """:meth:`adopt` of each identity, in one pass, each process found given the CPU priority
        ``nice`` where it has a higher one (an agent started by an earlier version): blocking
        (a few reads of ``/proc`` per process), call it from a worker thread."""
        found = [cls.adopt(identity) for identity in identities]
        for process in found:
            if process is not None:
                lower_priority(process.pid, nice)
        return found

    async def deprioritize(self, nice: int) -> None:
        """Give the process and every thread it started since :meth:`spawn` the CPU priority
        ``nice``, retrying while the kernel asks to (see :func:`.priority.lower_priority`)."""
        for _ in range(PRIORITY_RETRIES):
            if self.poll() or lower_priority(self.pid, nice):
                return
            await asyncio.sleep(0.1)

    async def settle(self, timeout: float = 2.0) -> Identity:
        """Complete the identity of a process spawned a moment ago: Popen returns while exec
        is still under way, and until it is done the command line reads empty. An identity
        without it would never match again, and the agent could not be re-adopted."""
        deadline = time.monotonic() + timeout
        delay = 0.001
        while not self.identity.cmdline and not self.poll() and time.monotonic() < deadline:
            # Backing off: on a busy machine (many agents starting at once) exec takes long,
            # and tight polls of every starting agent would keep the event loop busy.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            found = identify(self.pid, settle=0)
            if found is not None and same_process(self.proc, found.started):
                self.identity = found
        return self.identity

    # --- exit ---------------------------------------------------------------------------------

    def poll(self) -> bool:
        """True once the process has ended (reaping it when it is a child of ours)."""
        if not self.exited:
            if self.child:
                try:
                    pid, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere; the exit code is lost
                    self.exited = True
                    return True
                if pid == 0:
                    return False
                self.exit_code = os.waitstatus_to_exitcode(status)
                self.exited = True
                return True
            if alive(self.proc):
                return False
            self.exited = True
        if self.exit_code is None and self.starter is not None:
            self.exit_code = self.starter.exit_code(self.pid)
        return True

    async def wait(self, poll_interval: float = 0.5) -> int | None:
        """Until the process ends; its exit code when it was a child of ours (negative: the
        signal that ended it), else None. Any number of callers may wait at once, and a
        cancelled caller does not end the watch of the others."""
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_exit(poll_interval))
        return await asyncio.shield(self._watch)

    async def _watch_exit(self, poll_interval: float) -> int | None:
        pidfd = _open_pidfd(self.pid) if not self.poll() else None
        if pidfd is not None:
            loop = asyncio.get_running_loop()
            readable: asyncio.Future[None] = loop.create_future()

            def exited() -> None:
                if not readable.done():
                    readable.set_result(None)

            loop.add_reader(pidfd, exited)
            try:
                # A pidfd refers to the process it was opened for, never to a later user of the
                # pid; if the pid was reused before it was opened, poll() below tells.
                if not self.poll():
                    await readable
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        # After the pidfd said "exited" the child may need a moment to become reapable;
        # without a pidfd this is the whole watch.
        while not self.poll():
            await asyncio.sleep(poll_interval if pidfd is None else 0.01)
        if self.starter is not None:
            # The helper reaps it a moment after it exited, and then reports its status.
            deadline = time.monotonic() + EXIT_REPORT_WAIT
            while self.exit_code is None and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
                self.poll()
        return self.exit_code

    def forget(self) -> None:
        """Stop watching (the process keeps running; a later backend re-adopts it)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # --- signals ------------------------------------------------------------------------------

    def holds_pid(self) -> bool:
        """True while the pid still belongs to this process: it runs, or it is a zombie not
        reaped yet. Only then may it (or its process group) be signalled."""
        if self.exited:
            return False
        try:
            return self.proc.is_running()
        except psutil.Error:
            return False

    def signal(self, sig: int) -> bool:
        """Send ``sig`` to the leader alone; False when it is gone (nothing is sent to a reused pid)."""
        if not self.holds_pid():
            return False
        try:
            self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError, psutil.Error):
            return False
        return True

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the leader's process group (the leader alone when it is not a group
        leader); False when the process is gone, so that nothing is sent to a reused pid."""
        if not self.holds_pid():
            return False
        try:
            if os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, sig)
            else:
                self.proc.send_signal(sig)
        except (ProcessLookupError, PermissionError, psutil.Error):
            return False
        return True


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux 5.3+), or None where there is none: then exits are polled."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None
