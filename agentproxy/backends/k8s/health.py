"""Does the Kubernetes API server answer?

Every answer the client gets counts (a response, a line of a watch), and a cheap
check runs every ``check_interval`` so that an idle proxy knows too. The server
"answers" while its last answer is at most ``unready_after`` seconds old. A
frozen server (its connections open, nothing coming back) and a stopped one look
the same here: silence. When it answers again after a silence, the listeners
registered with :meth:`ApiHealth.on_recovery` run (the watch cache resumes its
watches at once rather than at the end of their backoff); so they do after any
failed call, as a restart can be quicker than ``unready_after``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class ApiHealth:
    """The time of the API server's last answer, and what follows from it."""

    def __init__(self, unready_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.unready_after = unready_after
        self._clock = clock
        self._last_answer: float | None = None
        self.last_error: str | None = None
        """What the last failed call or check said, for the readiness message."""
        self._on_recovery: list[Callable[[], None]] = []
        self.recoveries = 0
        """How often the server answered again after a silence."""

    @property
    def started(self) -> bool:
        """True once the server has answered at least once."""
        return self._last_answer is not None

    def answering(self) -> bool:
        """True while the last answer is at most ``unready_after`` seconds old."""
        return self._last_answer is not None and self._clock() - self._last_answer <= self.unready_after

    def silent(self) -> bool:
        """True when the server has answered before, not for ``unready_after`` seconds, and a
        call or check failed since its last answer: a silence of the server's, not a time in
        which this process asked nothing (busy with a list of thousands, say)."""
        return self.started and not self.answering() and self.last_error is not None

    def silence(self) -> float | None:
        """Seconds since the last answer (None before the first one)."""
        return None if self._last_answer is None else self._clock() - self._last_answer

    def answered(self) -> None:
        """The server answered (any HTTP response below 500, or a line of a watch)."""
        recovered = self._last_answer is not None and not self.answering()
        after_failure = self.last_error is not None
        self._last_answer = self._clock()
        self.last_error = None
        if recovered:
            self.recoveries += 1
            log.info("the Kubernetes API server answers again")
        if recovered or after_failure:
            # Also after a short outage (a restart quicker than unready_after): whatever
            # waits to retry need not wait out its backoff.
            for listener in list(self._on_recovery):
                try:
                    listener()
                except Exception:  # one listener must not keep the others from running
                    log.exception("a listener of the API server's recovery failed")

    def failed(self, error: str) -> None:
        """A call or check failed without an answer (or with a 5xx)."""
        self.last_error = error

    def on_recovery(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the server answers again after a silence or a failed call."""
        self._on_recovery.append(listener)

    def reason(self) -> str | None:
        """Why the server does not count as answering, None while it does."""
        if self.answering():
            return None
        silence = self.silence()
        text = ("the Kubernetes API server has not answered yet" if silence is None else
                f"the Kubernetes API server has not answered for {silence:.0f} s")
        return f"{text} ({self.last_error})" if self.last_error else text

    async def run_checks(self, check: Callable[[], Awaitable[object]], interval: float) -> None:
        """Call ``check`` every ``interval`` seconds, forever (until cancelled). ``check`` reports
        its answer through :meth:`answered`/:meth:`failed` (the client does); this loop logs
        when the server stops answering."""
        silent = False
        while True:
            started = self._clock()
            try:
                await check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed(getattr(exc, "message", None) or str(exc) or type(exc).__name__)
            if self.started and not self.answering() and not silent:
                silent = True
                log.warning("%s: /readyz answers 503 and creates fail with 503 until it answers", self.reason())
            elif self.answering():
                silent = False
            await asyncio.sleep(max(0.0, interval - (self._clock() - started)))
