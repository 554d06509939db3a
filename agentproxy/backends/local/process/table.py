"""Reads of the process table: children of every process, processes by their agent's tag,
and the live family of a set of processes."""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psutil

from .identity import alive

MAX_TREE = 10_000
"""Processes of one agent looked at, at most (bounds every walk of a tree)."""

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
