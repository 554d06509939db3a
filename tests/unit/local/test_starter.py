"""The agent starter (agentproxy.backends.local.process.starter), with real processes: every
agent it starts is in the helper's session (one scheduling group) and a process group of
its own, its exit status comes back, and the helper outlives its proxy's side while an
agent it started runs, so that agents never lose their parent's session."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import psutil
import pytest

from agentproxy.backends.local.process import AgentProcess, AgentStarter, autogroups_enabled
from agentproxy.backends.local.process.starter import StarterGone

from .support import wait_until

SLEEPER = "import time\nwhile True: time.sleep(1)"


@pytest.fixture
def starter():
    started = AgentStarter()
    try:
        yield started
    finally:
        started.close()


def spawn(starter: AgentStarter, tmp_path: Path, code: str) -> AgentProcess:
    return AgentProcess.spawn([sys.executable, "-c", code], env=dict(os.environ), cwd=tmp_path,
                              log_path=tmp_path / "agent.log", starter=starter)


def end(process: AgentProcess) -> None:
    if process.holds_pid():
        process.signal(signal.SIGKILL)


async def test_agents_share_the_helpers_session_and_report_their_exit_status(starter, tmp_path):
    first = spawn(starter, tmp_path, SLEEPER)
    second = spawn(starter, tmp_path, "import sys, time; time.sleep(0.2); print('bye'); sys.exit(7)")
    try:
        helper = starter.pid
        assert helper is not None and os.getsid(helper) == helper != os.getsid(0)
        # One session for every agent: one scheduling group where sessions are autogroups.
        assert os.getsid(first.pid) == os.getsid(second.pid) == helper
        # A process group each, so that each agent is signalled with its whole group.
        assert os.getpgid(first.pid) == first.pid and os.getpgid(second.pid) == second.pid
        assert not first.child and first.starter is starter
        assert await second.wait() == 7
        assert (tmp_path / "agent.log").read_text().strip() == "bye"
        assert not first.poll()
    finally:
        end(first)
    assert await first.wait() == -signal.SIGKILL


async def test_a_program_that_cannot_be_executed_is_an_error_naming_it(starter, tmp_path):
    missing = tmp_path / "no-such-program"
    with pytest.raises(FileNotFoundError) as raised:
        AgentProcess.spawn([str(missing)], env=dict(os.environ), cwd=tmp_path, log_path=tmp_path / "agent.log",
                           starter=starter)
    assert raised.value.filename == str(missing)
    # The helper is still there for the next agent.
    process = spawn(starter, tmp_path, "pass")
    assert await process.wait() == 0


async def test_the_helper_outlives_the_proxys_side_while_its_agents_run(tmp_path):
    starter = AgentStarter()
    process = spawn(starter, tmp_path, SLEEPER)
    helper = psutil.Process(starter.pid or 0)
    try:
        os.kill(process.pid, signal.SIGSTOP)  # a stopped member: an orphaned group would get SIGHUP
        starter.close()  # what a stopping (or killed) proxy does to it: its stdin closes
        assert starter.pid is None
        # Neither the agent nor its parent ends: the agent's process group is never orphaned.
        os.kill(process.pid, signal.SIGCONT)
        assert process.proc.is_running() and process.proc.ppid() == helper.pid and helper.is_running()
        assert process.proc.status() != psutil.STATUS_ZOMBIE
    finally:
        end(process)
    # Once its last agent ended, the helper ends too.
    await wait_until(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE,
                     timeout=60, what="the helper to end")


async def test_a_helper_that_ended_is_started_again(starter, tmp_path):
    first = spawn(starter, tmp_path, "pass")
    helper = starter.pid
    assert helper is not None and await first.wait() == 0
    os.kill(helper, signal.SIGKILL)
    await wait_until(lambda: starter.pid is None, timeout=60, what="the helper to be seen gone")
    second = spawn(starter, tmp_path, "pass")
    assert starter.pid not in (None, helper)
    assert await second.wait() == 0


def test_a_helper_that_cannot_start_is_an_error(tmp_path):
    starter = AgentStarter(python=str(tmp_path / "not-python"))
    try:
        with pytest.raises(OSError):
            spawn(starter, tmp_path, "pass")
    finally:
        starter.close()


def test_a_helper_that_ends_before_it_answers_is_an_error(tmp_path):
    # A stand-in for a helper killed mid-request: a "python" that reads nothing and exits.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    starter = AgentStarter(python=str(fake))
    try:
        with pytest.raises(StarterGone):
            spawn(starter, tmp_path, "pass")
    finally:
        starter.close()


def test_autogroups_are_read_from_the_kernels_switch(tmp_path):
    switch = tmp_path / "switch"
    assert not autogroups_enabled(str(switch))
    switch.write_text("1\n")
    assert autogroups_enabled(str(switch))
    switch.write_text("0\n")
    assert not autogroups_enabled(str(switch))


async def test_what_popen_refuses_is_the_same_error_through_the_helper(starter, tmp_path):
    with pytest.raises(ValueError):  # a NUL in a variable
        AgentProcess.spawn([sys.executable, "-c", "pass"], env={"GREETING": "hi\x00there"}, cwd=tmp_path,
                           log_path=tmp_path / "agent.log", starter=starter)
    with pytest.raises(ValueError):  # a NUL in an argument
        spawn(starter, tmp_path, "print('a\x00b')")
    # The helper still starts programs after a refusal.
    assert await spawn(starter, tmp_path, "pass").wait() == 0


async def test_failed_starts_do_not_make_the_helper_forget_a_running_agent(tmp_path):
    # The child of a failed exec is reaped by the helper's reaper as well as by Popen: the
    # agents still running must stay known, so that their exit is reported, also after the
    # proxy's side closed.
    starter = AgentStarter()
    first = spawn(starter, tmp_path, SLEEPER)
    helper = psutil.Process(starter.pid or 0)
    try:
        for _ in range(5):
            with pytest.raises(FileNotFoundError):
                AgentProcess.spawn([str(tmp_path / "no-such-program")], env=dict(os.environ), cwd=tmp_path,
                                   log_path=tmp_path / "agent.log", starter=starter)
        assert await spawn(starter, tmp_path, "import sys; sys.exit(3)").wait() == 3
        assert not first.poll()
        starter.close()
        assert helper.is_running() and first.proc.ppid() == helper.pid
    finally:
        end(first)
    assert await first.wait() == -signal.SIGKILL  # reported by the helper, which reaped it
    await wait_until(lambda: not helper.is_running() or helper.status() == psutil.STATUS_ZOMBIE,
                     timeout=60, what="the helper to end")


async def test_an_agent_that_ends_at_once_is_started_and_its_exit_status_comes_back(starter, tmp_path):
    # Ended before the proxy's side saw it: the helper keeps it unreaped until released, so it
    # is inspected as any new process and its end is an exit like any other (a crash loop of
    # the agent, say), not an error of the start.
    for _ in range(3):
        process = AgentProcess.spawn(["/bin/sh", "-c", "exit 5"], env=dict(os.environ), cwd=tmp_path,
                                     log_path=tmp_path / "agent.log", starter=starter)
        assert await process.wait() == 5
