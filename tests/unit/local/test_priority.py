"""Agents run at a lower CPU priority than the proxy: the pure reading of an autogroup's
nice value, and real processes (threads started before and children started after the
change) lowered, never raised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from agentproxy.backends.local.process import TAG_VARIABLE, AgentProcess, agent_environment, stop_tree
from agentproxy.backends.local.process.priority import autogroup_nice, lower_priority

from .support import PROGRAMS, autogroup_of, wait_until

THREADS = ("import threading, time\n"
           "for _ in range(3): threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n"
           "print('started', flush=True)\n"
           "time.sleep(120)\n")


def thread_nices(pid: int) -> set[int]:
    return {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


def test_an_autogroup_line_gives_its_nice_value():
    assert autogroup_nice("/autogroup-7120 nice 0\n") == 0
    assert autogroup_nice("/autogroup-1 nice 19") == 19
    assert autogroup_nice("/autogroup-3 nice -5\n") == -5
    assert autogroup_nice("") is None
    assert autogroup_nice("nice 4") is None


def test_every_thread_and_the_session_of_a_process_are_lowered_and_never_raised(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-c", THREADS], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        assert len(thread_nices(proc.pid)) >= 1 and len(os.listdir(f"/proc/{proc.pid}/task")) == 4
        assert lower_priority(proc.pid, 12) is True
        assert thread_nices(proc.pid) == {12}
        if autogroup_of(proc.pid) is not None:  # a kernel with autogroups: the agent's session is one
            assert autogroup_of(proc.pid) == 12
        assert lower_priority(proc.pid, 5) is True  # a higher priority than it has is not given back
        assert thread_nices(proc.pid) == {12}
        if autogroup_of(proc.pid) is not None:
            assert autogroup_of(proc.pid) == 12
        assert lower_priority(proc.pid, 0) is True and thread_nices(proc.pid) == {12}
    finally:
        proc.kill()
        proc.wait()
    assert lower_priority(proc.pid, 12) is True  # a process that is gone: nothing to do


async def test_a_spawned_agent_and_what_it_starts_run_at_its_priority(tmp_path: Path):
    # Below the test's own priority, whatever nice value the test run was started with.
    nice = min(19, psutil.Process().nice() + 5)
    env = agent_environment({}, {TAG_VARIABLE: "t-priority-test"})
    process = AgentProcess.spawn([sys.executable, str(PROGRAMS), "tree"], env=env, cwd=tmp_path,
                                 log_path=tmp_path / "out.log", nice=nice)
    try:
        await process.deprioritize(nice)
        await wait_until((tmp_path / "tree.json").exists, what="tree.json")
        family = [process.proc, *process.proc.children(recursive=True)]
        assert len(family) >= 3
        for member in family:
            assert member.nice() == nice, member
        assert autogroup_of(process.pid) in (None, nice)
        assert psutil.Process().nice() < nice  # the proxy keeps its own priority
    finally:
        await stop_tree(process, tag="t-priority-test", grace=2)
