"""What ``agents create --wait`` shows of a start: on a terminal, one block redrawn in place
(a line for the status, one per step, the step under way ticking); in a pipe, or with
``--plain``, one line per status and step.

The block's lines are pure (:func:`start_block`); the displays are checked by what they write,
and the command as a user runs it: the real ``agentproxy`` process against a real local-mode
server (real agentapi, echo demo agent), on a real pseudo-terminal whose screen is read back
through pexpect's terminal emulator."""

from __future__ import annotations

import io
import sys
import warnings

import pexpect
import pytest

from agentproxy.client.startview import (
    UP_AND_CLEAR,
    LiveProgress,
    PlainProgress,
    StartState,
    display_for,
    start_block,
)

from .support import cli_env

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # deprecated in favour of pyte, and enough to read a screen back
    from pexpect import ANSI

STEPS = ["process_started", "agentapi_answering", "restored", "ready"]


def step(name: str, seconds: float = 0.25, **extra: object) -> dict:
    return {"step": name, "seconds": seconds, "message": f"{name} reached", **extra}


def test_the_block_has_a_line_per_step_and_the_step_under_way_until_the_end():
    state = StartState("s1/a1", status="starting", began=0.0, last_step_at=10.0)
    assert start_block(state, now=12.5, width=80) == ["s1/a1: starting", "  | …    2.5s"]
    state.steps = [step("process_started", 0.5), step("agentapi_answering", 1.25)]
    lines = start_block(state, now=12.5, width=80, frame=1)
    assert lines[1] == "  + process_started      +0.5s  process_started reached"
    assert lines[2] == "  + agentapi_answering   +1.2s  agentapi_answering reached"
    assert lines[3].startswith("  / …") and lines[3].endswith("2.5s")
    state.steps.append(step("failed", 0.1, reason="CrashLoopBackOff"))
    lines = start_block(state, now=12.5, width=80)
    assert len(lines) == 4 and lines[-1].startswith("  x failed") and "CrashLoopBackOff: failed reached" in lines[-1]


def test_every_line_fits_the_terminal_and_holds_no_control_character():
    state = StartState("s1/a1", status="starting (\x1b[2Jhostile\nreason)",
                       steps=[step("process_started", message="x" * 500 + "\x07")])
    for line in start_block(state, now=state.began, width=40):
        assert len(line) <= 40
        assert not any(ord(c) < 32 or 0x7f <= ord(c) < 0xa0 for c in line), repr(line)


def test_a_terminal_block_is_drawn_over_the_one_before():
    out = io.StringIO()
    live = LiveProgress(out, width=lambda: 80)
    live.status("s1/a1", "pending")
    first = out.getvalue()
    assert UP_AND_CLEAR.format(n=2) not in first and first.count("\n") == 2
    live.step("s1/a1", step("process_started"))
    assert out.getvalue()[len(first):].startswith(UP_AND_CLEAR.format(n=2))
    screen = ANSI.ANSI(10, 80)
    screen.write(out.getvalue().replace("\n", "\r\n"))
    assert [line.rstrip() for line in str(screen).splitlines()][:2] == [
        "s1/a1: pending", "  + process_started   +0.2s  process_started reached"]


def test_plain_lines_for_a_pipe_a_dumb_terminal_or_when_asked():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True
    assert isinstance(display_for(io.StringIO(), plain=False, environ={"TERM": "xterm"}), PlainProgress)
    assert isinstance(display_for(Tty(), plain=True, environ={"TERM": "xterm"}), PlainProgress)
    assert isinstance(display_for(Tty(), plain=False, environ={"TERM": "dumb"}), PlainProgress)
    assert isinstance(display_for(Tty(), plain=False, environ={"TERM": "xterm"}), LiveProgress)
    said: list[str] = []
    plain = PlainProgress(said.append)
    plain.status("s1/a1", "starting")
    plain.step("s1/a1", step("process_started"))
    assert said == ["s1/a1: starting", "s1/a1: step process_started +0.25s: process_started reached"]


def _on_a_terminal(server, *args: str, rows: int = 60, cols: int = 120) -> tuple[int, str]:
    """Run ``agentproxy ARGS`` on a pseudo-terminal; its exit status and all it wrote."""
    env = {**cli_env(server), "TERM": "xterm"}
    child = pexpect.spawn(sys.executable, ["-m", "agentproxy", *args], env=env, encoding="utf-8",
                          dimensions=(rows, cols), timeout=180)
    try:
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus is not None and isinstance(child.before, str)
        return child.exitstatus, child.before
    finally:
        if child.isalive():
            child.terminate(force=True)


@pytest.mark.slow
def test_create_wait_on_a_terminal_redraws_one_block(server):
    status, written = _on_a_terminal(server, "agents", "create", "tty", "--id", "r1", "--wait")
    assert status == 0, written
    assert UP_AND_CLEAR.format(n=1)[:2] in written and "\x1b[J" in written  # redrawn in place
    screen = ANSI.ANSI(60, 120)
    screen.write(written)
    lines = [line.rstrip() for line in str(screen).splitlines() if line.strip()]
    # What is left on the screen: the block as it ended (once), then the table of the agent.
    assert lines[0] == "tty/r1: ready", lines
    assert [line.split()[1] for line in lines[1:1 + len(STEPS)]] == STEPS, lines
    assert all(line.split()[0] == "+" for line in lines[1:1 + len(STEPS)])
    assert lines[1 + len(STEPS)].split()[:4] == ["SESSION", "ID", "TYPE", "STATUS"], lines
    assert lines[2 + len(STEPS)].split()[:4] == ["tty", "r1", "echo", "ready"], lines
    assert sum("process_started" in line for line in lines) == 1


@pytest.mark.slow
def test_create_wait_plain_on_a_terminal_writes_one_line_per_step(server):
    status, written = _on_a_terminal(server, "agents", "create", "tty", "--id", "r2", "--wait", "--plain")
    assert status == 0, written
    assert "\x1b[" not in written
    lines = written.replace("\r\n", "\n").splitlines()
    steps = [line.split()[2] for line in lines if line.startswith("tty/r2: step ")]
    assert steps == STEPS, written
    assert "tty/r2: ready" in lines
