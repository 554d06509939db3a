"""The body of an agent's answer on its way to the client: held here until the relay takes it.

Four ways to hand it on, one per kind of answer:

- :meth:`AnswerBuffer.whole`: a short answer that is all here, in one piece (most answers);
- :meth:`AnswerBuffer.read`: piece by piece, awaited (a body of known length, aiohttp's route);
- :meth:`AnswerBuffer.divert`: each piece to a callback the moment it arrives (streams);
- :meth:`AnswerBuffer.pass_through`: a chunked answer's bytes as they came, framing included,
  before they are parsed (streams of the fast path).

Flow control: beyond :data:`HIGH_WATER` bytes held, reading from the agent pauses until the
relay took most of them (:class:`.flow.FlowControl`).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from .flow import FlowControl

HIGH_WATER = 256 * 1024
"""Bytes of an answer buffered here beyond which reading from the agent pauses."""


class AnswerBuffer:
    """The body of the current answer of one connection to an agent, and whether it ended."""

    __slots__ = ("flow", "_loop", "_chunks", "_buffered", "_waiter", "_sink", "raw", "passed", "ended",
                 "complete", "error", "head_only")

    def __init__(self, flow: FlowControl, loop: asyncio.AbstractEventLoop) -> None:
        self.flow = flow
        self._loop = loop
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.begin(head_only=False)

    def begin(self, head_only: bool) -> None:
        """Ready for the body of a new answer (``head_only``: the answer to ``HEAD``, which has none)."""
        self._chunks.clear()
        self._buffered = 0
        self._sink: Callable[[bytes], None] | None = None
        self.raw: Callable[[bytes], None] | None = None
        """Where the connection hands the agent's bytes before parsing (see :meth:`pass_through`)."""
        self.passed = 0
        """Body bytes handed on as they came (see :meth:`pass_through`)."""
        self.ended = False
        """True once the answer is complete or broke off."""
        self.complete = False
        """True once the answer ended cleanly."""
        self.error: Exception | None = None
        """Why the answer broke off."""
        self.head_only = head_only

    # --- the connection's side ----------------------------------------------------------------------

    def put(self, body: bytes) -> None:
        """A piece of the body, as parsed."""
        if self.raw is not None:  # the piece is on its way already
            self.passed += len(body)
            return
        if self._sink is not None:
            self._sink(body)
            return
        self._chunks.append(body)
        self._buffered += len(body)
        self._wake()
        if self._buffered > HIGH_WATER:
            self.flow.pause_reading()

    def finish(self) -> None:
        """The answer ended cleanly."""
        self.complete = self.ended = True
        self._wake()

    def fail(self, error: Exception) -> None:
        """The answer broke off (nothing changes for one that ended cleanly but its end)."""
        if self.error is None and not self.complete:
            self.error = error
        self.ended = True
        self._wake()

    # --- the relay's side ---------------------------------------------------------------------------

    def whole(self) -> bytes | None:
        """The body, when the answer is complete and arrived in one piece (not for HEAD); else ``None``
        and nothing is taken."""
        if not self.complete or self.head_only or self.error is not None or len(self._chunks) > 1:
            return None
        body = self._chunks.popleft() if self._chunks else b""
        self._buffered = 0
        return body

    async def read(self) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at its end. Raises why it broke off."""
        while not self._chunks:
            if self.ended:
                if self.error is not None:
                    raise self.error
                return b""
            await self._sleep()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._buffered <= HIGH_WATER // 4:
            self.flow.resume_reading()
        return chunk

    def divert(self, sink: Callable[[bytes], None]) -> list[bytes]:
        """Hand every further piece of the body to ``sink`` the moment it arrives (no task switch
        in between); the pieces that arrived before are returned, to be passed on first."""
        pending = list(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self.flow.resume_reading()
        self._sink = sink
        return pending

    def pass_through(self, raw: Callable[[bytes], None]) -> None:
        """Once :meth:`divert` is on: the connection hands every further byte to ``raw`` before it
        is parsed (the caller checked that the answer allows it: :meth:`.connection.Connection.pass_through`)."""
        self.raw = raw

    @property
    def diverted(self) -> bool:
        """True once :meth:`divert` is on."""
        return self._sink is not None

    def pause(self) -> None:
        """Stop reading from the agent (the relay cannot take more for now); wakes :meth:`wait`."""
        self.flow.pause_reading()
        self._wake()

    def resume(self) -> None:
        """Read from the agent again."""
        self.flow.resume_reading()

    async def wait(self) -> None:
        """Until the answer ends or reading pauses (with a sink: the body goes there meanwhile).
        Raises why the answer broke off."""
        while not self.ended and not self.flow.reading_paused:
            await self._sleep()
        if self.ended and self.error is not None:
            raise self.error

    async def _sleep(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
