"""When a local agent whose agentapi ended is started again: a pure policy.

Restarts follow Kubernetes' CrashLoopBackOff: the delay starts at
``backoff_initial`` and doubles up to ``backoff_max``; a run that lasted
``stable_after`` resets it. Unlike Kubernetes the supervisor gives up:
``crash_loop_failures`` ends within ``crash_loop_window`` make the agent
``failed`` (reason ``CrashLoopBackOff``), because nobody watches a local proxy's
agents the way a cluster operator watches pods.

Nothing here reads a clock of its own or touches a process: the clock is
injected, so the policy is tested by itself.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from ...settings.schema import SupervisionSettings

Clock = Callable[[], float]
"""Seconds from any fixed point (``time.monotonic``)."""


@dataclass(frozen=True)
class Ended:
    """How one run of agentapi ended."""

    reason: str
    """``Error``, ``Completed``, ``OOMKilled``, ``StartError``, ``StartTimeout`` or ``Exited``."""
    description: str
    exit_code: int | None = None
    final: bool = False
    """No restart: the agent becomes failed at once."""


def conventional(code: int | None) -> int | None:
    """An exit code as shells and Kubernetes show it: 128+N for a death by signal N."""
    if code is not None and code < 0:
        return 128 - code
    return code


def exited(code: int | None) -> Ended:
    """The end of a run whose agentapi exited with ``code`` (as ``waitpid`` tells it; None
    when it is unknown: a process started by an earlier proxy is not our child)."""
    code = conventional(code)
    if code is None:
        return Ended("Exited", "agentapi exited (exit code unknown: it was started by an earlier proxy)")
    return Ended("Completed" if code == 0 else "Error", f"agentapi exited with code {code}", code)


class RestartBackoff:
    """The delays between the runs of one agent, from the times its runs start and end."""

    def __init__(self, timing: SupervisionSettings, clock: Clock = time.monotonic) -> None:
        self.timing = timing
        self.clock = clock
        self._ends: collections.deque[float] = collections.deque()
        self._delay = timing.backoff_initial
        self._run_started: float | None = None

    def started(self) -> None:
        """A run begins now (a start, or the re-adoption of a running agent)."""
        self._run_started = self.clock()

    @property
    def recent_ends(self) -> int:
        """Ends counted towards a crash loop (within the window, since the last stable run)."""
        return len(self._ends)

    def next_delay(self) -> float | None:
        """A run has just ended: how long to wait before the next start, or None when the
        agent is in a crash loop and is not to be started again."""
        now = self.clock()
        if self._run_started is not None and now - self._run_started >= self.timing.stable_after:
            self._ends.clear()
            self._delay = self.timing.backoff_initial
        self._ends.append(now)
        while self._ends and self._ends[0] < now - self.timing.crash_loop_window:
            self._ends.popleft()
        if len(self._ends) >= self.timing.crash_loop_failures:
            return None
        delay = self._delay
        self._delay = min(self._delay * 2, self.timing.backoff_max)
        return delay


def probe_interval(previous: float, elapsed: float, timing: SupervisionSettings) -> float:
    """The interval until the next readiness probe: ``probe_interval_min`` for the first
    ``probe_fast_for`` seconds (most agents are ready within it, and each interval adds to
    their time to ready), then half as long again each time, up to ``probe_interval_max``."""
    if elapsed < timing.probe_fast_for:
        return previous
    return min(previous * 1.5, timing.probe_interval_max)
