"""What ``--wait`` shows while an agent starts: its status and the steps of its start.

Two displays of the same news (a status line, a step of ``GET .../progress``):

- :class:`PlainProgress`, one line per status and per step, for a pipe, a log file, a dumb
  terminal or ``--plain`` (what a script reads);
- :class:`LiveProgress`, on a terminal: one block redrawn in place, a line for the status and
  one for each step reached, the elapsed time of the step under way ticking, and the block as
  it was last drawn left behind when the wait ends.

:func:`start_block` is the pure part: the block's lines from what is known. The displays only
write (:func:`display_for` picks one).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import output

TICK = 0.5
"""Seconds between two redraws of a terminal block while nothing else changes (the clock moves)."""
ENDINGS = ("ready", "failed", "stopped")
SPINNER = "|/-\\"
UP_AND_CLEAR = "\x1b[{n}A\r\x1b[J"
"""Move the cursor ``n`` lines up, to the start of that line, and clear from there to the end of the screen."""


@dataclass
class StartState:
    """What is known of one agent's start."""

    label: str
    status: str = "…"
    steps: list[dict[str, Any]] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    last_step_at: float = field(default_factory=time.monotonic)


def _mark(step: dict[str, Any]) -> str:
    return {"failed": "x", "stopped": "-"}.get(str(step.get("step")), "+")


def start_block(state: StartState, now: float, width: int, frame: int = 0) -> list[str]:
    """The block's lines: ``label: status``, one line per step (a mark, its name, the seconds it
    took, its message), then, while the start goes on, the step under way with its time so far.
    Every line fits ``width`` columns and holds no control character."""
    lines = [f"{state.label}: {state.status}"]
    names = [str(s.get("step", "?")) for s in state.steps]
    pad = max((len(n) for n in names), default=0)
    for step, name in zip(state.steps, names, strict=True):
        seconds = step.get("seconds")
        took = f"+{seconds:.1f}s" if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) else ""
        detail = ": ".join(str(x) for x in (step.get("reason"), step.get("message")) if x)
        lines.append(f"  {_mark(step)} {name.ljust(pad)} {took:>7}  {detail}")
    if not names or names[-1] not in ENDINGS:
        lines.append(f"  {SPINNER[frame % len(SPINNER)]} {'…'.ljust(pad)} {now - state.last_step_at:>6.1f}s")
    return [_fit(output.terminal_safe(" ".join(line.split("\n"))), width) for line in lines]


def _fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[:max(1, width - 1)] + "…"


class PlainProgress:
    """One line per status and per step (the lines of a pipe)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def status(self, label: str, line: str) -> None:
        """The agent's status changed."""
        self.say(f"{label}: {line}")

    def step(self, label: str, step: dict[str, Any]) -> None:
        """The agent's start reached a step."""
        self.say(f"{label}: {output.describe_step(step)}")

    async def __aenter__(self) -> PlainProgress:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        pass


class LiveProgress:
    """One block redrawn in place on a terminal (see the module's docstring)."""

    def __init__(self, stream: TextIO, width: Callable[[], int] | None = None) -> None:
        self.stream = stream
        self._width = width or (lambda: _terminal_width(stream))
        self.state: StartState | None = None
        self._drawn = 0
        self._frame = 0
        self._ticker: asyncio.Task[None] | None = None

    def status(self, label: str, line: str) -> None:
        """The agent's status changed."""
        self._state(label).status = line
        self.draw()

    def step(self, label: str, step: dict[str, Any]) -> None:
        """The agent's start reached a step."""
        state = self._state(label)
        state.steps.append(step)
        state.last_step_at = time.monotonic()
        self.draw()

    def _state(self, label: str) -> StartState:
        if self.state is None:
            self.state = StartState(label)
        return self.state

    def draw(self) -> None:
        """Draw the block again over the one drawn before."""
        if self.state is None:
            return
        lines = start_block(self.state, time.monotonic(), self._width(), self._frame)
        prefix = UP_AND_CLEAR.format(n=self._drawn) if self._drawn else ""
        self.stream.write(prefix + "".join(line + "\n" for line in lines))
        self.stream.flush()
        self._drawn = len(lines)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self._frame += 1
            self.draw()

    async def __aenter__(self) -> LiveProgress:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        self.draw()  # as it ended: the line of the step under way is gone once it ended


def _terminal_width(stream: TextIO) -> int:
    try:
        columns = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        columns = 0
    return max(20, columns) if columns > 0 else 80  # 0: a terminal that does not say


def display_for(stream: TextIO, plain: bool, environ: dict[str, str] | None = None) -> PlainProgress | LiveProgress:
    """The display ``--wait`` uses on ``stream``: redrawn on a terminal (not a dumb one), plain
    lines otherwise or when ``plain``."""
    env = os.environ if environ is None else environ
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if plain or not tty or env.get("TERM", "") in ("", "dumb"):
        return PlainProgress(lambda line: print(line, file=stream, flush=True))
    return LiveProgress(stream)
