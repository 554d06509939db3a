"""The conversation with an agent as its ``message_update`` events build it, and how it is
printed on a terminal where text can only be added (or, on a real terminal, the last
block redrawn). Pure: no I/O but the stream it is given."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from typing import Any, TextIO

from .output import terminal_safe

USER, AGENT = "user", "agent"


def clean(content: str) -> str:
    """A message as people read it: agentapi pads screen lines with spaces; control
    characters are dropped (they must not drive the user's terminal)."""
    lines = [line.rstrip() for line in terminal_safe(content).replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines)


@dataclass
class Message:
    """One message of the conversation."""

    id: int
    role: str
    text: str


@dataclass(frozen=True)
class Change:
    """What an update did: ``new`` message, ``append`` (``added`` is the new end of its
    text), ``replace`` (the text changed otherwise) or ``same``."""

    kind: str
    message: Message
    added: str = ""


class Transcript:
    """Messages by id, built from ``message_update`` events (a message grows while the agent writes)."""

    def __init__(self) -> None:
        self.messages: dict[int, Message] = {}

    def apply(self, data: dict[str, Any]) -> Change:
        """Take one ``message_update`` event's data."""
        msg_id, role, text = int(data["id"]), str(data.get("role", AGENT)), clean(str(data.get("message", "")))
        current = self.messages.get(msg_id)
        message = Message(msg_id, role, text)
        self.messages[msg_id] = message
        if current is None:
            return Change("new", message)
        if current.text == text and current.role == role:
            return Change("same", message)
        if text.startswith(current.text):
            return Change("append", message, text[len(current.text):])
        return Change("replace", message)

    def apply_event(self, data: str) -> Change:
        """Take the JSON data of a ``message_update`` event."""
        return self.apply(json.loads(data))

    @property
    def last_id(self) -> int:
        """The highest message id so far (-1 when none)."""
        return max(self.messages, default=-1)

    def after(self, msg_id: int, role: str | None = None) -> list[Message]:
        """Messages with a higher id (of one role), in order."""
        return [m for i, m in sorted(self.messages.items()) if i > msg_id and (role is None or m.role == role)]


class Printer:
    """Prints a conversation as it changes: appended text is written as it comes; a changed
    message is redrawn in place on a terminal when it is the last thing shown, and shown
    again below otherwise."""

    def __init__(self, out: TextIO, redraw: bool | None = None) -> None:
        self.out = out
        self.redraw = out.isatty() if redraw is None else redraw
        self.at_line_start = True
        self._last: Message | None = None  # the message whose text ends the output
        self._last_rows = 0

    def write(self, text: str) -> None:
        """Write ``text`` (the caller's own lines: prompts, status)."""
        if text:
            self.out.write(text)
            self.out.flush()
            self.at_line_start = text.endswith("\n")
            self._last = None

    def line(self, text: str) -> None:
        """Write ``text`` on a line of its own."""
        self.write(("" if self.at_line_start else "\n") + text + "\n")

    def show(self, change: Change, hide_roles: tuple[str, ...] = ()) -> None:
        """Show one change of the transcript."""
        message = change.message
        if change.kind == "same" or message.role in hide_roles:
            return
        if change.kind == "append" and self._last is not None and self._last.id == message.id:
            self._emit(change.added, message)
            return
        if change.kind == "replace" and self.redraw and self._last is not None and self._last.id == message.id:
            self.out.write(f"\r\x1b[{self._last_rows - 1}A\x1b[J" if self._last_rows > 1 else "\r\x1b[J")
            self.at_line_start = True
            self._last_rows = 0
        elif not self.at_line_start:
            self.out.write("\n")
            self.at_line_start = True
            self._last_rows = 0
        self._emit(_label(message) + message.text, message)

    def _emit(self, text: str, message: Message) -> None:
        self.out.write(text)
        self.out.flush()
        if text:
            self.at_line_start = text.endswith("\n")
        self._last = message
        self._last_rows = _rows(_label(message) + message.text)

    def end_block(self) -> None:
        """Finish the current line (before the caller writes its own)."""
        if not self.at_line_start:
            self.out.write("\n")
            self.out.flush()
            self.at_line_start = True
        self._last = None


def _label(message: Message) -> str:
    return "> " if message.role == USER else ""


def _rows(text: str) -> int:
    """Terminal rows ``text`` takes (lines wrap at the terminal's width)."""
    width = max(shutil.get_terminal_size((80, 24)).columns, 1)
    return sum(max(1, -(-len(line) // width)) for line in text.split("\n"))
