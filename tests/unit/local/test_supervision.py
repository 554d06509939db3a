"""Supervision: restarts with back-off, crash loops, start timeouts, the memory limit, and
stopping whole process trees (grandchildren and processes in other sessions too)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
from pathlib import Path

import psutil

from agentproxy.backends.base import AgentStatus

from .conftest import FAST, assert_nothing_left, spec, wait_for, wait_ready, wait_until


def starts_of(state) -> list[float]:
    path = Path(state.details["work_dir"]) / "starts.txt"
    return [float(t) for t in path.read_text().split()] if path.exists() else []


async def test_crashes_are_restarted_with_growing_back_off(backend, settings):
    await backend.create(spec(settings, "c1", "crash-twice"))
    # agentapi answers /status whatever its agent does, so a run that is about to crash
    # may look ready for a moment: wait for the third run.
    state = await wait_for(backend, "c1", lambda s: s.restarts == 2 and s.status is AgentStatus.READY)
    assert state.details["last_exit_code"] == 1  # agentapi's code when its agent failed
    assert state.details["last_state"]["reason"] == "Error"
    await wait_until(lambda: len(starts_of(state)) == 3, what="the third start of the agent")
    starts = starts_of(state)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 0.1 s, then 0.2 s of back-off (plus the time a start takes)
    assert gaps[0] >= FAST.backoff_initial and gaps[1] >= 2 * FAST.backoff_initial
    logs = await backend.logs("s1", "c1", tail_lines=200)
    assert "agentapi exited with code 1; restarting in 0.1 s" in logs
    assert "restarting in 0.2 s" in logs
    # agentapi logs the agent's last screen when the agent fails.
    assert "agent exited with error" in logs and "crashing on purpose" in logs


async def test_a_crash_loop_ends_failed_with_the_log_tail(backend, settings, tmp_path):
    await backend.create(spec(settings, "c1", "crash"))
    state = await wait_for(backend, "c1", lambda s: s.status is AgentStatus.FAILED)
    assert state.reason == "CrashLoopBackOff"
    assert state.restarts == FAST.crash_loop_failures - 1
    assert "agentapi ended 4 times" in (state.message or "")
    assert "crashing on purpose" in (state.message or "") and "non-zero exit code" in (state.message or "")
    assert state.upstream is None and state.details["pid"] is None and state.details["port"] is None
    assert backend.ports.assigned == {}
    starts = starts_of(state)
    assert len(starts) == FAST.crash_loop_failures
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[2] >= FAST.backoff_max  # 0.1, 0.2, 0.4 (the cap)
    await assert_nothing_left(tmp_path)


async def test_an_agentapi_that_never_answers_fails_after_the_start_timeout(settings, tmp_path, launcher):
    from agentproxy.backends.local.backend import LocalBackend

    from .conftest import shut_down

    # The real agentapi, started late by a wrapper: it cannot be made to hang on its own.
    wrapper = tmp_path / "slow-agentapi"
    wrapper.write_text(f"#!/bin/sh\necho 'about to wait'\nsleep 60\nexec {launcher} \"$@\"\n")
    wrapper.chmod(0o755)
    settings.local_mode.agentapi_binary = str(wrapper)
    settings.local_mode.supervision = dataclasses.replace(FAST, start_timeout=2.0)
    backend = LocalBackend(settings)
    await backend.start()
    try:
        await backend.create(spec(settings, "t1"))
        state = await wait_for(backend, "t1", lambda s: s.status is AgentStatus.FAILED, timeout=10)
        assert state.reason == "StartTimeout"
        assert "did not answer GET /status" in (state.message or "") and "within 2 s" in (state.message or "")
        assert "about to wait" in (state.message or "")  # the log tail
        await assert_nothing_left(tmp_path)
    finally:
        await shut_down(backend)


async def test_memory_limit_kills_the_tree_as_oom_killed_then_restarts(backend, settings, tmp_path):
    # The agent holds 200 MiB on its first start only; the limit is 128 MiB.
    await backend.create(spec(settings, "h1", "hog", resources={"memory_limit": "128Mi", "memory_request": "64Mi"}))
    state = await wait_for(backend, "h1", lambda s: s.restarts == 1 and s.status is AgentStatus.READY, timeout=20)
    last = state.details["last_state"]
    assert last["reason"] == "OOMKilled" and last["exit_code"] == 137
    assert "exceeded the limit 128Mi" in last["message"]
    assert state.details["memory_limit_bytes"] == 128 * 1024 * 1024
    logs = await backend.logs("s1", "h1", tail_lines=200)
    assert "memory use" in logs and "killing the agent's processes" in logs
    # The restarted run stays well below the limit.
    state = await wait_for(backend, "h1", lambda s: s.details["rss_bytes"] is not None)
    assert state.details["rss_bytes"] < 128 * 1024 * 1024


async def test_oom_killed_is_the_reason_while_backing_off(backend, settings):
    seen = []

    async def watch() -> None:
        async for event in backend.events():
            seen.append((event.agent.status, event.agent.reason))
            if event.agent.status is AgentStatus.READY and event.agent.restarts == 1:
                return

    import asyncio

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await backend.create(spec(settings, "h2", "hog", resources={"memory_limit": "128Mi", "memory_request": "64Mi"}))
    await asyncio.wait_for(watcher, 20)
    assert (AgentStatus.STARTING, "OOMKilled") in seen


async def test_delete_ends_grandchildren_and_processes_in_other_sessions(backend, settings, tmp_path):
    await backend.create(spec(settings, "t1", "tree"))
    state = await wait_ready(backend, "t1")
    tree_file = Path(state.details["work_dir"]) / "tree.json"
    await wait_until(tree_file.exists, what="tree.json")
    tree = json.loads(tree_file.read_text())
    procs = {name: psutil.Process(pid) for name, pid in tree.items()}
    assert os.getsid(tree["loner"]) == tree["loner"]  # left the agent's session
    # The stubborn ones ignore SIGTERM, SIGINT and SIGHUP: only SIGKILL after the grace period ends them.
    await backend.delete("s1", "t1")
    for name, proc in procs.items():
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE, name
    await assert_nothing_left(tmp_path)


async def test_a_tree_left_behind_by_a_crashed_agentapi_is_ended(backend, settings, tmp_path):
    await backend.create(spec(settings, "t2", "tree"))
    state = await wait_ready(backend, "t2")
    tree_file = Path(state.details["work_dir"]) / "tree.json"
    await wait_until(tree_file.exists, what="tree.json")
    tree = json.loads(tree_file.read_text())
    # Wait until a sample has seen the whole tree, then kill agentapi alone.
    await wait_for(backend, "t2", lambda s: (s.details["processes"] or 0) >= 5)
    os.kill(state.details["pid"], signal.SIGKILL)
    state = await wait_for(backend, "t2", lambda s: s.restarts == 1 and s.status is AgentStatus.READY)
    assert state.details["last_state"]["exit_code"] == 137
    for name in ("child", "grandchild", "loner"):
        await wait_until(lambda: not _running(tree[name]), what=f"the old {name} to end")  # noqa: B023 - awaited here


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
