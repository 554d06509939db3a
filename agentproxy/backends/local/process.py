"""Processes of local agents: spawn, identify, watch, sample and stop whole trees.

A pid alone never names a process here: every process is known by its
:class:`Identity` (pid, start time and command line), and nothing is signalled
unless it still has the identity it was recorded with, so that a pid the
kernel reused for an unrelated program is left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import psutil

CREATE_TIME_TOLERANCE = 0.05
"""Seconds two start times of one process may differ by (both are rounded by the kernel)."""

MAX_TREE = 10_000
"""Processes of one agent looked at, at most (bounds every walk of a tree)."""


# --- where programs are and what they get ------------------------------------------------------

def executable_search_path(path: str | None = None) -> str:
    """The directories programs are looked up in: the one of the running Python first
    (so that ``python3 -m ...`` runs inside the proxy's own environment, venv or not),
    then ``$PATH``."""
    own = os.path.dirname(sys.executable)
    rest = os.environ.get("PATH", os.defpath) if path is None else path
    return os.pathsep.join(p for p in (own, rest) if p)


def find_executable(name: str, search_path: str | None = None) -> str | None:
    """The absolute path of an executable: ``name`` itself when it holds a ``/`` (after
    ``~`` expansion), else the first match on :func:`executable_search_path`."""
    if not name:
        return None
    if os.sep in name:
        candidate = os.path.abspath(os.path.expanduser(name))
        return candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
    found = shutil.which(name, path=executable_search_path(search_path))
    return os.path.abspath(found) if found else None


def agent_environment(spec_env: Mapping[str, str], extra: Mapping[str, str] = (),
                      base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of an agentapi process: the proxy's own, without ``AGENTAPI_*``
    (agentapi reads its flags from those and would be reconfigured by them), plus
    ``extra`` and then the spec's variables."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("AGENTAPI_")}
    env.update(dict(extra))
    env.update(dict(spec_env))
    return env


# --- identity ----------------------------------------------------------------------------------

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
    def from_dict(cls, data: Mapping[str, Any]) -> "Identity":
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


def find_process(identity: Identity) -> psutil.Process | None:
    """The live process with this identity: same pid, start time and command line, not
    exited. None for anything else, above all a reused pid."""
    try:
        proc = psutil.Process(identity.pid)
        if abs(proc.create_time() - identity.create_time) > CREATE_TIME_TOLERANCE:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE or tuple(proc.cmdline()) != identity.cmdline:
            return None
    except psutil.Error:
        return None
    return proc


def process_of(ref: tuple[int, float]) -> psutil.Process | None:
    """The live process ``(pid, create_time)`` names, or None (also when the pid was reused)."""
    pid, create_time = ref
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > CREATE_TIME_TOLERANCE:
            return None
    except psutil.Error:
        return None
    return proc if alive(proc) else None


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` (the very process, not a reuse of its pid) runs; a zombie does not."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- one agentapi process ----------------------------------------------------------------------

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
        self.child = _parent_pid(proc) == os.getpid()
        self.exited = False
        self.exit_code: int | None = None
        self._watch: asyncio.Task[int | None] | None = None

    @property
    def pid(self) -> int:
        return self.identity.pid

    @classmethod
    def spawn(cls, argv: list[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str],
              log_path: str | os.PathLike[str]) -> "AgentProcess":
        """Start ``argv``: stdin /dev/null (agentapi reads a piped stdin to its end before it
        starts), stdout and stderr appended to ``log_path``, a new session. Raises ``OSError``
        when the program cannot be executed."""
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
        # Read once, without waiting: the command line may still be empty (see settle()).
        identity = identify(popen.pid, settle=0) or Identity(popen.pid, time.time(), ())
        try:
            proc = psutil.Process(popen.pid)
        except psutil.Error as exc:  # an unreaped child always has a process entry
            raise OSError(f"cannot inspect process {popen.pid}: {exc}") from None
        process = cls(proc, identity, adopted=False)
        process.child = True
        return process

    @classmethod
    def adopt(cls, identity: Identity) -> "AgentProcess | None":
        """The process of a state-file record, if it still runs with that identity."""
        proc = find_process(identity)
        if proc is None:
            _reap_if_ours(identity)
            return None
        return cls(proc, identity, adopted=True)

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
            if found is not None and abs(found.create_time - self.identity.create_time) <= CREATE_TIME_TOLERANCE:
                self.identity = found
        return self.identity

    # --- exit ---------------------------------------------------------------------------------

    def poll(self) -> bool:
        """True once the process has ended (reaping it when it is a child of ours)."""
        if self.exited:
            return True
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
        if not alive(self.proc):
            self.exited = True
        return self.exited

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
            readable = loop.create_future()
            loop.add_reader(pidfd, lambda: readable.done() or readable.set_result(None))
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


def _reap_if_ours(identity: Identity) -> None:
    """Reap the recorded process if it is an exited child of this very process (a backend
    of this process started it, and a later one found it dead): nobody else can."""
    try:
        proc = psutil.Process(identity.pid)
        if (proc.ppid() != os.getpid() or proc.status() != psutil.STATUS_ZOMBIE
                or abs(proc.create_time() - identity.create_time) > CREATE_TIME_TOLERANCE):
            return
        os.waitpid(identity.pid, os.WNOHANG)
    except (psutil.Error, ChildProcessError):
        pass


def _parent_pid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux 5.3+), or None where there is none: then exits are polled."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:
        return None


# --- trees -------------------------------------------------------------------------------------

TAG_VARIABLE = "AGENTPROXY_PROCESS_TAG"
"""Every process of an agent inherits this variable with the agent's own random tag, so
that a process that left the tree (its parent exited before it could be seen) is still
found. Reading environments needs no cooperation from the agent, only that it keeps
its environment."""


@dataclass(frozen=True)
class TableSnapshot:
    """One read of the process table."""

    children: Mapping[int, list[int]]
    """Pids of the children of every process."""
    tagged: Mapping[str, list[psutil.Process]] | None = None
    """Processes by the value of their :data:`TAG_VARIABLE` (None: environments not read)."""


def _parent_of(pid: int, linux: bool) -> int | None:
    try:
        if linux:
            # The parent pid is the 2nd field after the command name, which may hold spaces
            # and parentheses: split after the last ')'.
            with open(f"/proc/{pid}/stat", "rb") as src:
                return int(src.read().rsplit(b")", 1)[1].split()[1])
        return psutil.Process(pid).ppid()  # pragma: no cover - systems without /proc
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def read_table(with_tags: bool = False) -> TableSnapshot:
    """Read the process table (and, ``with_tags``, every environment): blocking, call it from
    a worker thread."""
    linux = os.path.exists("/proc/self/stat")
    me = os.getpid()
    children: dict[int, list[int]] = defaultdict(list)
    tagged: dict[str, list[psutil.Process]] | None = defaultdict(list) if with_tags else None
    prefix = f"{TAG_VARIABLE}=".encode()
    for pid in psutil.pids():
        ppid = _parent_of(pid, linux)
        if ppid:
            children[ppid].append(pid)
        if tagged is None or pid == me:
            continue
        try:
            # The handle first: it pins the start time, so that if the pid is reused before the
            # environment is read, a later signal through it is refused rather than misdirected.
            proc = psutil.Process(pid)
        except psutil.Error:
            continue
        for entry in (_environ(proc) or b"").split(b"\0"):
            if entry.startswith(prefix):
                tagged[entry[len(prefix):].decode(errors="replace")].append(proc)
                break
    return TableSnapshot(children, tagged)


def children_map() -> Mapping[int, list[int]]:
    """Pids of the children of every process, from one pass over the process table."""
    return read_table().children


class ProcessTable:
    """Reads of the process table, shared: a caller gets the first read that began after
    it asked, so it sees every change up to its call, and any number of concurrent callers
    (stopping many agents at once) share one read in a worker thread."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._asked = 0
        self._covered = 0
        self._last: TableSnapshot | None = None

    async def read(self, with_tags: bool = False) -> TableSnapshot:
        """A snapshot no older than this call."""
        self._asked += 1
        ticket = self._asked
        async with self._lock:
            last = self._last
            if last is not None and self._covered >= ticket and (not with_tags or last.tagged is not None):
                return last
            covers = self._asked
            snapshot = await asyncio.to_thread(read_table, with_tags)
            self._last, self._covered = snapshot, covers
            return snapshot


def live_family(roots: Iterable[psutil.Process], snapshot: TableSnapshot | None = None) -> dict[int, psutil.Process]:
    """The live processes among ``roots`` and all their live descendants, by pid. Without a
    ``snapshot`` it reads the process table: then call it from a worker thread."""
    stack = [root for root in roots if alive(root)]
    if not stack:
        return {}
    children = (snapshot or read_table()).children
    found: dict[int, psutil.Process] = {}
    while stack and len(found) < MAX_TREE:
        proc = stack.pop()
        if proc.pid in found:
            continue
        found[proc.pid] = proc
        for pid in children.get(proc.pid, ()):
            if pid in found:
                continue
            try:
                child = psutil.Process(pid)
                # The table may be a moment old: a pid that was reused since is not a child.
                if child.ppid() != proc.pid:
                    continue
            except psutil.Error:
                continue
            stack.append(child)
    return {pid: proc for pid, proc in found.items() if alive(proc)}


def tagged_processes(tag: str, snapshot: TableSnapshot | None = None) -> list[psutil.Process]:
    """Live processes whose environment holds ``TAG_VARIABLE=tag``. Without a ``snapshot``
    (read with tags) it reads every environment: then call it from a worker thread."""
    tagged = (snapshot if snapshot is not None and snapshot.tagged is not None else read_table(True)).tagged
    return [proc for proc in (tagged or {}).get(tag, []) if alive(proc)]


def _environ(proc: psutil.Process) -> bytes | None:
    """The raw environment block of a process (NUL-separated), None when unreadable."""
    try:
        with open(f"/proc/{proc.pid}/environ", "rb") as src:
            return src.read()
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # Linux, and the process is gone
    except OSError:
        return None
    try:  # pragma: no cover - systems without /proc
        return b"\0".join(f"{k}={v}".encode() for k, v in proc.environ().items())
    except psutil.Error:  # pragma: no cover
        return None


async def stop_tree(leader: AgentProcess | None, known: Iterable[tuple[int, float]] = (), *,
                    tag: str | None = None, grace: float = 10.0, poll_interval: float = 0.1,
                    kill_rounds: int = 5, table: ProcessTable | None = None) -> None:
    """End a whole agent: SIGTERM to the leader's process group, up to ``grace`` seconds for
    every process of the tree to exit, then SIGKILL to whatever is left, descendants found
    on the way included; the leader is reaped when it is a child of ours.

    The tree is the leader's descendants, plus ``known`` (pid, start time) pairs seen in it
    earlier and the processes carrying ``tag`` (:data:`TAG_VARIABLE`): a process that left
    the tree (re-parented when its parent died) is still ended. agentapi runs the agent in
    a session of its own (a terminal), so the agent is reached through agentapi's own
    shutdown and, if that fails, by SIGKILL after the grace period. ``table`` shares reads
    of the process table with concurrent stops.
    """
    table = table or ProcessTable()
    snapshot = await table.read(with_tags=bool(tag))
    roots = [leader.proc] if leader is not None else []
    roots += [p for p in (process_of(ref) for ref in known) if p is not None]
    roots += tagged_processes(tag, snapshot) if tag else []
    family = live_family(roots, snapshot)
    seen = dict(family)
    try:
        if leader is None or not leader.signal_group(signal.SIGTERM):
            _signal_all(family.values(), signal.SIGTERM)  # no leader to shut the rest down: ask each
        deadline = time.monotonic() + max(0.0, grace)
        if leader is not None and not leader.poll():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(leader.wait(), timeout=max(0.0, grace))
        while True:
            family = live_family(family.values(), await table.read())
            seen.update(family)
            if not family or time.monotonic() >= deadline:
                break
            await asyncio.sleep(poll_interval)
        # What is left is killed, round after round, because a dying process may still fork;
        # the tag also finds what was forked and orphaned since the last look.
        for _ in range(kill_rounds):
            snapshot = await table.read(with_tags=bool(tag))
            stragglers = tagged_processes(tag, snapshot) if tag else []
            roots = [*family.values(), *stragglers] + ([leader.proc] if leader is not None else [])
            family = live_family(roots, snapshot)
            seen.update(family)
            if (leader is None or leader.poll()) and not family:
                return
            if leader is not None and not leader.poll():
                leader.signal_group(signal.SIGKILL)
            _signal_all(family.values(), signal.SIGKILL)
            await asyncio.sleep(poll_interval)
        # SIGKILL cannot be refused: a process still there is in uninterruptible sleep and ends
        # on its own; a leader of ours is then reaped by its watch.
    finally:
        if leader is not None:
            seen.pop(leader.pid, None)  # reaped by its own poll(), which keeps its exit code
        _reap_ours(seen.values())


def _reap_ours(procs: Iterable[psutil.Process]) -> None:
    """Reap the ended processes that are children of this process (an agentapi that an
    earlier backend of this same process started): nobody else will."""
    me = os.getpid()
    for proc in procs:
        try:
            if proc.ppid() == me and proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue


def _signal_all(procs: Iterable[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            proc.send_signal(sig)  # psutil refuses to signal a pid that was reused meanwhile


# --- sampling ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class TreeSample:
    """CPU and memory of one agent's process tree at one moment."""

    rss_bytes: int
    cpu_percent: float
    members: tuple[tuple[int, float], ...] = field(default=())
    """(pid, start time) of every process in the tree, the leader first."""


class TreeSampler:
    """Samples the process trees of all agents in one pass over the process table (a
    per-agent ``children(recursive=True)`` would read the whole table once per agent).

    CPU percentages compare with the previous sample of the same process, so the
    sampler keeps its process handles from one call to the next. Meant to run in a
    worker thread; one call at a time.
    """

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    def sample(self, roots: Mapping[str, Identity]) -> dict[str, TreeSample]:
        """A sample per key of ``roots`` whose leader still runs with its identity."""
        children = children_map()
        seen: set[int] = set()
        samples: dict[str, TreeSample] = {}
        for key, identity in roots.items():
            root = self._handle(identity.pid)
            if root is None or abs(self._create_time(root) - identity.create_time) > CREATE_TIME_TOLERANCE:
                continue
            rss, cpu, members = 0, 0.0, []
            stack: list[tuple[int, int | None]] = [(identity.pid, None)]  # (pid, parent)
            visited: set[int] = set()
            while stack and len(visited) < MAX_TREE:
                pid, parent = stack.pop()
                if pid in visited:
                    continue
                visited.add(pid)
                proc = self._handle(pid)
                if proc is None:
                    continue
                try:
                    with proc.oneshot():
                        # The members are ended with the agent: a pid reused since the table
                        # was read (another parent) must not become one.
                        if parent is not None and proc.ppid() != parent:
                            continue
                        rss += proc.memory_info().rss
                        cpu += proc.cpu_percent(None)
                        members.append((pid, proc.create_time()))
                except psutil.Error:  # exited meanwhile, or a zombie
                    continue
                stack.extend((child, pid) for child in children.get(pid, ()))
            seen |= visited
            samples[key] = TreeSample(rss, round(cpu, 1), tuple(members))
        for pid in set(self._procs) - seen:
            del self._procs[pid]
        return samples

    def _handle(self, pid: int) -> psutil.Process | None:
        proc = self._procs.get(pid)
        if proc is not None and proc.is_running():
            return proc
        try:
            proc = psutil.Process(pid)
        except psutil.Error:
            self._procs.pop(pid, None)
            return None
        self._procs[pid] = proc
        return proc

    @staticmethod
    def _create_time(proc: psutil.Process) -> float:
        try:
            return proc.create_time()
        except psutil.Error:
            return -1.0


def directory_size(path: str | os.PathLike[str], max_entries: int = 100_000) -> tuple[int, bool]:
    """Bytes of the regular files under ``path`` (symlinks not followed) and whether the
    count is complete: the walk stops after ``max_entries`` entries."""
    total, entries = 0, 0
    stack = [Path(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                for entry in it:
                    entries += 1
                    if entries > max_entries:
                        return total, False
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(Path(entry.path))
                        elif entry.is_file(follow_symlinks=False):
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total, True
