"""Starting an agent's process without blocking the event loop, and never unsupervised."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

from .leader import AgentProcess
from .starter import AgentStarter
from .stop import stop_in_background
from .table import ProcessTable


async def spawn_in_thread(argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: str | os.PathLike[str],
                          tag: str | None = None, table: ProcessTable | None = None, nice: int = 0,
                          starter: AgentStarter | None = None) -> AgentProcess:
    """:meth:`AgentProcess.spawn` in a worker thread, creating ``cwd`` first when it is missing.

    Popen returns only once the new program is being executed, which on a busy machine takes
    tens of milliseconds; the event loop serves meanwhile. The spawn itself cannot be called
    off: when the caller is cancelled, what it starts is ended (with its ``tag``), so that
    nothing runs unsupervised. ``nice`` is the CPU priority it starts with, ``starter`` the
    helper that starts it (see :meth:`AgentProcess.spawn`). Raises ``OSError`` when the program cannot be executed.
    """
    def spawn() -> AgentProcess:
        cwd.mkdir(parents=True, exist_ok=True)
        return AgentProcess.spawn(argv, env=env, cwd=cwd, log_path=log_path, nice=nice, starter=starter)

    spawning = asyncio.ensure_future(asyncio.to_thread(spawn))
    try:
        return await asyncio.shield(spawning)
    except asyncio.CancelledError:
        spawning.add_done_callback(lambda done: _end_orphan(done, tag, table))
        raise


def _end_orphan(spawning: asyncio.Future[AgentProcess], tag: str | None, table: ProcessTable | None) -> None:
    if not spawning.cancelled() and spawning.exception() is None:
        stop_in_background(spawning.result(), tag=tag, table=table)
