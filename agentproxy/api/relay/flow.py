"""Flow control of one transport, shared by the relay's two protocols (as aiohttp's
``base_protocol.py`` and uvicorn's ``flow_control.py`` share theirs).

Reading: a protocol that holds more bytes than its consumer takes pauses reading from its peer
and resumes once the consumer caught up; pausing twice or resuming what is not paused does
nothing, and neither does anything once the transport is gone. Writing: asyncio tells the
protocol when the transport's buffer is full (``pause_writing``) and drained again
(``resume_writing``); :meth:`FlowControl.drain` waits in between.
"""

from __future__ import annotations

import asyncio


class FlowControl:
    """Paused reading and writing of one transport (``None`` until it is made or once it is gone)."""

    __slots__ = ("transport", "reading_paused", "_loop", "_drained")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.reading_paused = False
        """True while reading is paused here (a transport paused elsewhere is not seen)."""
        self._loop = loop
        self._drained: asyncio.Future[None] | None = None

    # --- reading -------------------------------------------------------------------------------------

    def pause_reading(self) -> None:
        """Stop reading from the peer (nothing once the transport is gone)."""
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the peer again (nothing once the transport is gone)."""
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # --- writing -------------------------------------------------------------------------------------

    def pause_writing(self) -> None:
        """The transport's buffer is full (asyncio's ``Protocol.pause_writing``)."""
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        """The transport's buffer drained (asyncio's ``Protocol.resume_writing``)."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def drain(self) -> None:
        """Until the transport takes more bytes (at once when it does). Raises what :meth:`abort` set."""
        if self._drained is not None and not self._drained.done():
            await self._drained

    def abort(self, error: Exception) -> None:
        """The connection is gone: a writer waiting in :meth:`drain` gets ``error``."""
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(error)
