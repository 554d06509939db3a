"""Each agent's output: one log file with a size cap and numbered backups.

agentapi writes straight into the file (opened with O_APPEND), not through a
pipe to the proxy: an agent must survive a restart of the proxy, and a pipe
would break with it. The cap is therefore kept by copy-and-truncate, checked
every few seconds: the file may grow past the cap by what is written between
two checks, and a line written during the copy itself can be lost.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_BACKUPS = 2
MAX_TAIL_BYTES = 1024 * 1024
"""Bytes read from the end of the log, at most, to answer a tail request."""


class AgentLog:
    """``agent.log`` plus backups ``agent.log.1`` (newer) .. ``agent.log.N`` (older)."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES,
                 backups: int = DEFAULT_BACKUPS) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups

    def files(self) -> list[Path]:
        """The log and its backups, newest first (whether they exist or not)."""
        return [self.path] + [self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self.backups + 1)]

    def rotate_if_needed(self) -> bool:
        """Rotate when the log reached its cap; True when it did."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return False
        if size < self.max_bytes:
            return False
        files = self.files()
        for older, newer in zip(reversed(files[1:]), reversed(files[:-1]), strict=True):
            if newer != self.path and newer.exists():
                os.replace(newer, older)
        if self.backups:
            # Copy, not rename: agentapi keeps writing through its open descriptor.
            shutil.copyfile(self.path, files[1])
        os.truncate(self.path, 0)
        return True

    def note(self, text: str) -> None:
        """Append a line of the supervisor's own (start, exit, restart, kill) to the log, so
        that the log tells the agent's whole story like a pod's events do."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as out:
                out.write(f"{stamp} agentproxy: {text}\n")
        except OSError:
            pass  # the log is best effort; the state and events carry the same facts

    def tail(self, lines: int = 100, max_bytes: int = MAX_TAIL_BYTES) -> str:
        """The last ``lines`` lines (from the backups too when the log is short), reading at
        most ``max_bytes`` bytes."""
        if lines <= 0:
            return ""
        chunks: list[bytes] = []
        budget = max_bytes
        complete = True  # whether the oldest chunk starts at the beginning of a line
        for path in self.files():
            if budget <= 0:
                break
            try:
                with open(path, "rb") as src:
                    size = src.seek(0, os.SEEK_END)
                    start = max(0, size - budget)
                    src.seek(start)
                    data = src.read(budget)
            except OSError:
                continue
            budget -= len(data)
            if data and not data.endswith(b"\n") and chunks:
                data += b"\n"  # a rotation may cut a line; do not glue it to the next file's first
            chunks.insert(0, data)
            complete = start == 0
            if b"".join(chunks).count(b"\n") > lines:
                break
        text = b"".join(chunks).decode("utf-8", errors="replace")
        result = text.splitlines()
        if not complete and result:
            result = result[1:]  # cut off in the middle by the byte budget
        result = result[-lines:]
        return "\n".join(result) + "\n" if result else ""

    def remove(self) -> None:
        """Delete the log and its backups."""
        for path in self.files():
            try:
                path.unlink()
            except FileNotFoundError:
                pass
