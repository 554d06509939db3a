"""CPU and memory of every agent's process tree, and the size of its work directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .identity import Identity, same_process, start_since_boot
from .table import MAX_TREE, children_map


@dataclass(frozen=True)
class TreeSample:
    """CPU and memory of one agent's process tree at one moment."""

    rss_bytes: int
    cpu_percent: float
    members: tuple[tuple[int, float], ...] = field(default=())
    """(pid, start since boot) of every process in the tree, the leader first."""


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
            if root is None or not same_process(root, identity.started):
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
                        members.append((pid, start_since_boot(proc)))
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
