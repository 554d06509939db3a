"""What a restarted proxy needs to find its agents again: one JSON file in data_dir.

The file maps agent ids to records (spec, port, process identity, restarts,
creation time, and for a failed agent why). It is rewritten whole, atomically
(a temporary file, fsync, ``os.replace``), so a reader sees the old or the new
version and never a mix; writes requested while one is under way are merged
into the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..base import Unavailable

log = logging.getLogger(__name__)

STATE_VERSION = 1


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a reader (or a crash) sees the old or the new content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # The rename itself is durable only once the directory is synced.
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class StateFile:
    """The state file of one data_dir."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, dict[str, Any]]:
        """The records by agent id; empty when there is no file. An unreadable file is moved
        aside (``state.json.corrupt-TIME``) and reported, so that the proxy still starts."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or not isinstance(data.get("agents"), dict):
                raise ValueError("no 'agents' object")
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
        except ValueError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            log.error("state file %s is unreadable (%s); moved to %s, starting without agents",
                      self.path, exc, aside.name)
            return {}
        return {str(k): v for k, v in data["agents"].items() if isinstance(v, dict)}

    def write(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the file with these records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": STATE_VERSION, "agents": dict(records)}, indent=1, sort_keys=True)
        write_atomically(self.path, text + "\n")


class StateWriter:
    """Writes ``snapshot()`` to the state file whenever asked, one write at a time, in a
    worker thread (fsync is slow). A caller of :meth:`save` returns once a write that began
    after its call has finished, so many concurrent callers share one write."""

    def __init__(self, state_file: StateFile, snapshot: Callable[[], Mapping[str, Mapping[str, Any]]]) -> None:
        self.file = state_file
        self._snapshot = snapshot
        self._requested = 0
        self._written = 0
        self._lock = asyncio.Lock()

    async def save(self) -> None:
        """Persist the current state (raises ``OSError`` when the file cannot be written)."""
        self._requested += 1
        ticket = self._requested
        async with self._lock:
            if self._written >= ticket:
                return
            covers = self._requested
            records = self._snapshot()
            await asyncio.to_thread(self.file.write, records)
            self._written = covers


class DataDirLock:
    """An exclusive lock on a data_dir: two proxies supervising the same agents would
    restart and kill each other's processes. The kernel drops it when the holder dies."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`Unavailable` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Unavailable(f"local_mode.data_dir {self.path.parent} is in use by another agentproxy "
                              f"(pid {holder}); stop it or use another data_dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
