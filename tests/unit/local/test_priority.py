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
from agentproxy.backends.local.process.priority import autogroup_nice, lower_group, lower_priority

from .support import OURS, PROGRAMS, autogroup_of, kernel_allows, lowered, thread_nices, wait_until

THREADS = ("import threading, time\n"
           "for _ in range(3): threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n"
           "print('started', flush=True)\n"
           "time.sleep(120)\n")


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
        assert kernel_allows(lambda: lower_priority(proc.pid, 12))
        assert thread_nices(proc.pid) == {lowered(12)}
        if autogroup_of(proc.pid) is not None:  # a kernel with autogroups: the agent's session is one
            assert autogroup_of(proc.pid) == 12
        assert lower_priority(proc.pid, 5) is True  # a higher priority than it has is not given back
        assert thread_nices(proc.pid) == {lowered(12)}
        if autogroup_of(proc.pid) is not None:
            assert autogroup_of(proc.pid) == 12
        assert lower_priority(proc.pid, 0) is True and thread_nices(proc.pid) == {lowered(12)}
    finally:
        proc.kill()
        proc.wait()
    assert lower_priority(proc.pid, 12) is True  # a process that is gone: nothing to do


async def test_a_spawned_agent_and_what_it_starts_run_at_its_priority(tmp_path: Path):
    # Below the test's own priority where there is room, whatever nice value the test run has.
    nice = min(19, OURS + 5)
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
        assert psutil.Process().nice() == OURS  # the proxy keeps its own priority
    finally:
        await stop_tree(process, tag="t-priority-test", grace=2)


SESSION_WITH_A_MEMBER = (
    "import subprocess, sys, time\n"
    "member = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], process_group=0)\n"
    "print(member.pid, flush=True)\n"
    "time.sleep(120)\n")


def test_the_one_group_of_a_shared_session_is_lowered_through_any_member():
    # A stand-in for the agent starter: a session leader, and an agent in its session.
    leader = subprocess.Popen([sys.executable, "-c", SESSION_WITH_A_MEMBER], stdout=subprocess.PIPE,
                              start_new_session=True)
    member = 0
    try:
        assert leader.stdout is not None
        member = int(leader.stdout.readline())
        assert os.getsid(member) == leader.pid != member
        assert kernel_allows(lambda: lower_priority(member, 12))
        assert thread_nices(member) == {lowered(12)}
        # The leader's threads keep their priority: within the group it outweighs its agents.
        assert thread_nices(leader.pid) == {OURS}
        # The group, the same through any member, is lowered: every agent in it weighs as one program.
        assert autogroup_of(member) == autogroup_of(leader.pid) and autogroup_of(member) in (None, 12)
    finally:
        end(member, leader)


def test_lowering_a_group_leaves_its_threads_alone():
    leader = subprocess.Popen([sys.executable, "-c", SESSION_WITH_A_MEMBER], stdout=subprocess.PIPE,
                              start_new_session=True)
    member = 0
    try:
        assert leader.stdout is not None
        member = int(leader.stdout.readline())
        assert lower_group(leader.pid, 12) is True
        assert thread_nices(leader.pid) == thread_nices(member) == {OURS}
        assert autogroup_of(leader.pid) in (None, 12)
    finally:
        end(member, leader)


def test_the_proxys_own_session_is_never_lowered():
    ours = autogroup_of(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # in our session
    try:
        assert lower_priority(child.pid, 12) is True
        assert thread_nices(child.pid) == {lowered(12)}
        assert autogroup_of(os.getpid()) == ours and psutil.Process().nice() == OURS
        assert lower_group(child.pid, 12) is True and autogroup_of(os.getpid()) == ours
    finally:
        end(0, child)


def end(member: int, leader: subprocess.Popen[bytes]) -> None:
    for pid in (member, leader.pid):
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    leader.wait()
