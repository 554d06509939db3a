"""Process identity, whole-tree stop, exit watching and sampling, on real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agentproxy.backends.local.process import (
    TAG_VARIABLE,
    AgentProcess,
    Identity,
    TreeSampler,
    agent_environment,
    directory_size,
    executable_search_path,
    find_executable,
    find_process,
    identify,
    stop_tree,
    tagged_processes,
)

from .support import PROGRAMS, assert_nothing_left, wait_until


def spawn(tmp_path: Path, *args: str, tag: str = "t-process-test") -> AgentProcess:
    env = agent_environment({}, {TAG_VARIABLE: tag})
    return AgentProcess.spawn([sys.executable, str(PROGRAMS), *args], env=env, cwd=tmp_path,
                              log_path=tmp_path / "out.log")


async def tree_of(tmp_path: Path) -> dict[str, int]:
    path = tmp_path / "tree.json"
    await wait_until(path.exists, what="tree.json")
    return json.loads(path.read_text())


def test_identity_holds_when_the_boot_time_steps_with_the_wall_clock(monkeypatch):
    # Linux derives /proc/stat's boot time (whole seconds) from the wall clock: when the clock is
    # adjusted it steps by one, and every create_time psutil reports steps with it. The start
    # since boot does not: an agent recorded before the step is still the same process after it.
    proc = subprocess.Popen(["sleep", "30"])
    try:
        identity = identify(proc.pid)
        assert identity is not None
        record = json.loads(json.dumps(identity.to_dict()))
        earlier = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(),
                   "cmdline": list(identity.cmdline)}  # a record of an earlier version
        assert find_process(Identity.from_dict(earlier)).pid == proc.pid
        boot, create_time = psutil.boot_time(), psutil.Process.create_time
        monkeypatch.setattr(psutil, "boot_time", lambda: boot + 1.0)
        monkeypatch.setattr(psutil.Process, "create_time", lambda self: create_time(self) + 1.0)
        assert find_process(identity).pid == proc.pid
        assert find_process(Identity.from_dict(record)).pid == proc.pid
        assert find_process(Identity(proc.pid, identity.started + 1.0, identity.cmdline)) is None
    finally:
        proc.kill()
        proc.wait()


def test_identity_names_one_process_and_not_a_reuse_of_its_pid(tmp_path):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        identity = identify(proc.pid)
        assert identity is not None and identity.cmdline == ("sleep", "30")
        assert find_process(identity).pid == proc.pid
        assert Identity.from_dict(json.loads(json.dumps(identity.to_dict()))) == identity
        assert find_process(Identity(proc.pid, identity.started + 5, identity.cmdline)) is None
        assert find_process(Identity(proc.pid, identity.started, ("sleep", "31"))) is None
        assert AgentProcess.adopt(Identity(proc.pid, identity.started - 5, identity.cmdline)) is None
    finally:
        proc.kill()
        proc.wait()
    # An exited process is not adoptable either.
    assert find_process(identity) is None
    with pytest.raises(ValueError):
        Identity.from_dict({"pid": "x"})


async def test_a_freshly_spawned_process_is_identified_by_its_full_command_line(tmp_path):
    # Popen returns while exec is still under way, when the command line reads empty; an
    # identity recorded then would never match again and the agent could not be re-adopted.
    # A script shows it best: the kernel puts its interpreter in front of the command line.
    script = tmp_path / "agentapi"
    script.write_text("#!/bin/sh\nsleep 30\n")
    script.chmod(0o755)
    processes = [AgentProcess.spawn([str(script), "server"], env=os.environ, cwd=tmp_path,
                                    log_path=tmp_path / "out.log") for _ in range(30)]
    try:
        for process in processes:
            await process.settle()
            assert process.identity.cmdline == ("/bin/sh", str(script), "server")
            assert AgentProcess.adopt(process.identity) is not None
    finally:
        for process in processes:
            await stop_tree(process, grace=1)


async def test_wait_gives_the_exit_code_of_a_child_and_reaps_it(tmp_path):
    process = AgentProcess.spawn([sys.executable, "-c", "import sys; sys.exit(7)"], env=os.environ,
                                 cwd=tmp_path, log_path=tmp_path / "out.log")
    assert await asyncio.wait_for(process.wait(), 10) == 7
    assert process.poll() and not process.holds_pid()
    with pytest.raises(psutil.NoSuchProcess):
        psutil.Process(process.pid).status()  # reaped: no zombie
    # Gone means never signalled again, whatever now has the pid.
    assert process.signal_group(signal.SIGTERM) is False


async def test_many_waiters_and_a_cancelled_one(tmp_path):
    process = spawn(tmp_path, "serve")
    waiters = [asyncio.ensure_future(process.wait()) for _ in range(3)]
    await asyncio.sleep(0.1)
    waiters[0].cancel()
    os.kill(process.pid, signal.SIGKILL)
    assert await asyncio.wait_for(asyncio.gather(*waiters[1:]), 10) == [-9, -9]
    await assert_nothing_left(tmp_path)


async def test_spawned_process_has_its_own_session_dev_null_stdin_and_the_log(tmp_path):
    process = spawn(tmp_path, "serve")
    try:
        assert os.getsid(process.pid) == process.pid and os.getpgid(process.pid) == process.pid
        assert os.readlink(f"/proc/{process.pid}/fd/0") == "/dev/null"
        await wait_until(lambda: "ready" in (tmp_path / "out.log").read_text(), what="output in the log")
    finally:
        await stop_tree(process, grace=2)


async def test_stop_tree_ends_children_grandchildren_and_other_sessions(tmp_path):
    process = spawn(tmp_path, "tree")
    tree = await tree_of(tmp_path)
    procs = [psutil.Process(pid) for pid in tree.values()]
    await stop_tree(process, grace=0.5)
    assert process.poll() and process.exit_code == -signal.SIGTERM  # the group got SIGTERM
    for proc in procs:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    await assert_nothing_left(tmp_path)


async def test_stop_tree_finds_processes_that_left_the_tree_by_their_tag(tmp_path):
    # The loner of "tree" is in a session of its own; once its parent is gone it is a child of
    # init, outside every tree. Only the tag still ties it to the agent.
    process = spawn(tmp_path, "tree", tag="t-orphans")
    tree = await tree_of(tmp_path)
    os.kill(tree["self"], signal.SIGKILL)
    assert await asyncio.wait_for(process.wait(), 10) == -9
    loner = psutil.Process(tree["loner"])
    await wait_until(lambda: loner.ppid() != tree["self"], what="the loner to be re-parented")
    assert {p.pid for p in tagged_processes("t-orphans")} >= {tree["loner"], tree["child"], tree["grandchild"]}
    await stop_tree(None, tag="t-orphans", grace=0.3)
    assert tagged_processes("t-orphans") == []
    await assert_nothing_left(tmp_path)


async def test_a_graceful_leader_needs_no_kill(tmp_path):
    process = spawn(tmp_path, "serve")
    await wait_until(lambda: "ready" in (tmp_path / "out.log").read_text(), what="the program")
    # programs.py exits on SIGINT only; SIGTERM's default action ends it as well.
    await asyncio.wait_for(stop_tree(process, grace=5), 4)
    assert process.exit_code == -signal.SIGTERM


HOLDER = ("import subprocess, sys, time\n"
          "code = 'import time; block = b\"1\" * (40 << 20); time.sleep(30)'\n"
          "child = subprocess.Popen([sys.executable, '-c', code])\n"
          "print(child.pid, flush=True)\n"
          "time.sleep(30)\n")


def test_tree_sampler_sums_the_tree(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        identity = identify(parent.pid)
        assert identity is not None
        sampler = TreeSampler()
        for _ in range(100):  # until the child holds its 40 MiB (at most 100 x 0.05 s)
            sample = sampler.sample({"a": identity})["a"]
            if sample.rss_bytes > 40 << 20:
                break
            time.sleep(0.05)
        assert sample.rss_bytes > 40 << 20
        assert [pid for pid, _ in sample.members] == [parent.pid, child]
        # A root whose start time differs is another process: no sample.
        assert sampler.sample({"a": Identity(parent.pid, identity.started + 9, identity.cmdline)}) == {}
    finally:
        for proc in psutil.Process(parent.pid).children() + [psutil.Process(parent.pid)]:
            proc.kill()
        parent.wait()
        parent.stdout.close()


def test_find_executable_prefers_the_running_pythons_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert find_executable("python3") == os.path.join(os.path.dirname(sys.executable), "python3")
    assert executable_search_path().split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert find_executable("sh") in ("/usr/bin/sh", "/bin/sh")
    assert find_executable("no-such-program-anywhere") is None
    assert find_executable("") is None
    script = tmp_path / "tool"
    script.write_text("#!/bin/sh\n")
    assert find_executable(str(script)) is None  # not executable
    script.chmod(0o755)
    assert find_executable(str(script)) == str(script)


def test_agent_environment_drops_agentapi_variables():
    env = agent_environment({"B": "spec"}, {"C": "extra", "B": "extra"},
                            base={"AGENTAPI_PORT": "1", "AGENTAPI_ALLOWED_HOSTS": "*", "PATH": "/bin", "A": "a"})
    assert env == {"PATH": "/bin", "A": "a", "C": "extra", "B": "spec"}


def test_directory_size_counts_files_and_stops_at_the_limit(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one").write_bytes(b"x" * 100)
    (tmp_path / "two").write_bytes(b"x" * 20)
    (tmp_path / "link").symlink_to("/etc/passwd")
    assert directory_size(tmp_path) == (120, True)
    assert directory_size(tmp_path, max_entries=1)[1] is False
    assert directory_size(tmp_path / "missing") == (0, True)
