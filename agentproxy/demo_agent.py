"""The ``echo`` demo agent: a tiny REPL that answers every message with ``echo: <text>``.

It lets agentproxy be tried without credentials for a real model. agentapi runs
it in a terminal and types each user message as ``x``, a backspace, the text in
bracketed-paste markers (``ESC[200~`` ... ``ESC[201~``) and a carriage return;
it considers the program ready once a line with ``>`` is on the screen and a
message sent once the screen changed. So the agent prints a ``> `` prompt, echoes
what is typed (the terminal's own echo is off: it would show the escape
sequences), and answers on carriage return.

Run: ``python3 -m agentproxy.demo_agent``. Without a terminal (stdin a pipe or a
file) it reads the same keystrokes, without echoing them, and ends at end of input.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable

PROMPT = "> "
BANNER = "agentproxy echo agent: every message comes back as 'echo: <message>'."
PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"
ERASE = ("\x08", "\x7f")
MAX_MESSAGE = 1024 * 1024
"""Characters kept of one message (the rest is dropped), so input cannot grow memory without end."""


def reply(text: str) -> str:
    """The answer to one message."""
    return f"echo: {text}"


class LineEditor:
    """Turns keystrokes into messages: printable characters are typed, backspace or
    delete erases one, text between paste markers is taken as it is (newlines too), a
    carriage return or newline outside a paste ends the message. Other escape
    sequences (arrow keys, ...) are ignored."""

    def __init__(self, echo: Callable[[str], None] = lambda _: None) -> None:
        self.echo = echo
        self.buffer: list[str] = []
        self.pending = ""  # an escape sequence not complete yet
        self.pasting = False

    def feed(self, data: str) -> list[str]:
        """Consume ``data``; the messages it completed."""
        done: list[str] = []
        text = self.pending + data
        self.pending = ""
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                sequence = _escape_sequence(text, i)
                if sequence is None:  # cut off: wait for the rest
                    self.pending = text[i:]
                    break
                if sequence == PASTE_START:
                    self.pasting = True
                elif sequence == PASTE_END:
                    self.pasting = False
                i += len(sequence)
                continue
            i += 1
            if self.pasting:
                self._type("\n" if ch in "\r\n" else ch)
            elif ch in "\r\n":
                done.append("".join(self.buffer))
                self.buffer.clear()
            elif ch in ERASE:
                if self.buffer:
                    erased = self.buffer.pop()
                    if erased != "\n":
                        self.echo("\b \b")
            elif ch >= " " or ch == "\t":
                self._type(ch)
        return done

    def _type(self, ch: str) -> None:
        if len(self.buffer) < MAX_MESSAGE:
            self.buffer.append(ch)
            self.echo("\r\n" if ch == "\n" else ch)


def _escape_sequence(text: str, start: int) -> str | None:
    """The escape sequence at ``text[start]`` (an ESC), or None when ``text`` ends inside it."""
    if start + 1 >= len(text):
        return None
    if text[start + 1] != "[":
        return text[start:start + 2]  # ESC and one character (Alt+key)
    end = start + 2
    while end < len(text):
        if "\x40" <= text[end] <= "\x7e":  # the final byte of a CSI sequence
            return text[start:end + 1]
        end += 1
    return None


def clean(line: str) -> str:
    """One line of agentapi-style keystrokes as the message it types (for callers that
    have a whole line rather than a stream)."""
    editor = LineEditor()
    messages = editor.feed(line + "\r")
    return messages[0] if messages else ""


def main() -> int:
    """Run the REPL until end of input or SIGINT (agentapi interrupts its agent on shutdown)."""
    fd = sys.stdin.fileno()
    terminal = os.isatty(fd)
    out = sys.stdout

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    restore = _raw_mode(fd) if terminal else None
    try:
        if terminal:
            write("\x1b[?2004h")  # ask the terminal for bracketed paste, as real agents do
        write(f"{BANNER}\n{PROMPT}")
        editor = LineEditor(write if terminal else (lambda _: None))
        # Incremental: a read may end in the middle of a multi-byte character.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            for message in editor.feed(decoder.decode(data)):
                # On a terminal the typed text is already on the screen; elsewhere it is
                # written out, so that a log reads like the terminal would.
                write("\n" if terminal else f"{message}\n")
                text = message.strip()
                if text:
                    write(reply(text) + "\n")
                write(PROMPT)
    except KeyboardInterrupt:
        pass
    finally:
        if terminal:
            write("\x1b[?2004l\n")
        if restore is not None:
            restore()
    return 0


def _raw_mode(fd: int) -> Callable[[], None] | None:
    """Put the terminal into character mode without echo (signals still work, output still
    turns \\n into \\r\\n); returns what restores the old mode."""
    try:
        import termios
    except ImportError:  # pragma: no cover - not a POSIX system
        return None
    old = termios.tcgetattr(fd)
    new = termios.tcgetattr(fd)
    new[0] &= ~(termios.ICRNL | termios.IXON)  # iflag: keep CR as CR; ^S/^Q are text
    new[3] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)  # lflag: ISIG stays on
    new[6][termios.VMIN] = 1
    new[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, new)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


if __name__ == "__main__":
    sys.exit(main())
