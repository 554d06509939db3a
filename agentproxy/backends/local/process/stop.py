"""Ending an agent's whole process tree."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable

import psutil

from .identity import process_of
from .leader import AgentProcess
from .table import ProcessTable, live_family, tagged_processes

_BACKGROUND_STOPS: set[asyncio.Task[None]] = set()
"""Stops nobody waits for (referenced until done, or they could be garbage-collected half-way)."""


def stop_in_background(leader: AgentProcess, *, tag: str | None = None, table: ProcessTable | None = None) -> None:
    """End ``leader``'s tree at once (no grace), without waiting: a process whose start was
    called off must not run unsupervised."""
    task = asyncio.get_running_loop().create_task(stop_tree(leader, tag=tag, grace=0, table=table))
    _BACKGROUND_STOPS.add(task)
    task.add_done_callback(_BACKGROUND_STOPS.discard)


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
