"""A Server-Sent Events parser that takes bytes in chunks of any size.

It follows the WHATWG event-stream rules that matter to agentproxy and
agentapi: ``event:`` and ``data:`` fields, multi-line data, comments, and
lines ending in LF, CR or CRLF. Lines are not limited in length (an agent's
message can be large), and a chunk may end anywhere, even inside a UTF-8
character.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

MAX_PENDING = 32 * 1024 * 1024
"""Bytes of one unfinished line :func:`read_events` holds at most (an agent's message is rarely a megabyte)."""


@dataclass(frozen=True)
class Event:
    """One dispatched event: its name (``message`` when none was given) and its data."""

    name: str
    data: str
    id: str | None = None


class SSEParser:
    """Feed it bytes, get the events they complete."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._name = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._pending_cr = False

    @property
    def pending(self) -> int:
        """Characters of the line not complete yet."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Event]:
        """The events completed by ``chunk``."""
        text = self._decoder.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split between two chunks
        self._pending_cr = False
        self._buffer += text
        events: list[Event] = []
        while True:
            cut = _line_end(self._buffer)
            if cut is None:
                break
            end, after = cut
            line = self._buffer[:end]
            if after == len(self._buffer) and self._buffer.endswith("\r"):
                self._pending_cr = True
            self._buffer = self._buffer[after:]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment (heartbeats)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._name = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._name = ""
            return None
        event = Event(self._name or "message", "\n".join(self._data), self._id)
        self._name, self._data = "", []
        return event


def _line_end(buffer: str) -> tuple[int, int] | None:
    """Where the first line of ``buffer`` ends and the next begins, or None if it is not complete."""
    cr, lf = buffer.find("\r"), buffer.find("\n")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, lf + 1
    if cr + 1 < len(buffer) and buffer[cr + 1] == "\n":
        return cr, cr + 2
    return cr, cr + 1


async def read_events(content: aiohttp.StreamReader, limit: int = MAX_PENDING) -> AsyncIterator[Event]:
    """The events of a response body, as they arrive (``ValueError`` past ``limit``).

    Chunks are fed as they come rather than read by line: ``readline`` stops at 64 KiB,
    which a long agent message exceeds.
    """
    parser = SSEParser()
    async for chunk in content.iter_any():
        for event in parser.feed(chunk):
            yield event
        if parser.pending > limit:
            raise ValueError(f"an event line of more than {limit} bytes")
