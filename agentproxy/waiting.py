"""Is a Claude Code agent waiting for its user? What its own hooks say, kept in a file.

agentapi cannot tell an agent that stopped to ask for a permission from one that finished
its turn: both are ``stable``. Claude Code knows, and tells its hooks: the prepared home
(:mod:`agentproxy.agenthome`) runs ``python3 -m agentproxy.waiting --work-dir DIR`` on

- ``Notification`` of a permission question (``notification_type`` ``permission_prompt``;
  Claude Code's idle reminder at the end of a turn is not one): the question's text is
  written to :data:`MARKER` in the agent's state directory;
- ``UserPromptSubmit`` (a new message), ``PostToolUse`` (the question was answered yes and
  the tool ran) and ``Stop`` (the turn ended, e.g. the answer was no): the file is removed.

The proxy reads the file when the agent's screen changes (agentapi's events) and shows
``waiting_input`` while the file holds a question; a message sent to the agent through the
proxy (the answer: a keystroke, or a new prompt) clears it at once, so a tool that runs for a
minute after a yes never shows ``waiting_input`` in between. Standard library only: the
agent image runs it without agentproxy's dependencies. It prints nothing (what a
``UserPromptSubmit`` hook prints would become part of the prompt) and always exits 0, so a
failure here never stops the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from .privatefile import write_private

MARKER = "waiting.json"
"""The file of the pending question, in the agent's state directory (``.agentproxy``)."""
STATE_DIR = ".agentproxy"
ASKING = "Notification"
CLEARING = ("UserPromptSubmit", "PostToolUse", "Stop")
"""Hook events after which the agent no longer waits."""
HOOK_EVENTS = (ASKING, *CLEARING)
MAX_INPUT = 1 << 20
MAX_QUESTION = 2000
"""Characters of a question kept (Claude Code's are one line)."""


def marker_path(work_dir: str) -> str:
    """Where the pending question of the agent whose work directory is ``work_dir`` is kept."""
    return os.path.join(work_dir, STATE_DIR, MARKER)


def is_permission_question(event: Mapping[str, Any]) -> bool:
    """True for a notification that asks the user for a permission."""
    kind = event.get("notification_type")
    if isinstance(kind, str) and kind:
        return kind == "permission_prompt"
    # Versions without notification_type: the permission question is the one saying so.
    return "permission" in str(event.get("message") or "").lower()


def handle(event: Mapping[str, Any], work_dir: str, now: float | None = None) -> None:
    """Keep or clear the pending question after one hook event."""
    name = event.get("hook_event_name")
    path = marker_path(work_dir)
    if name == ASKING:
        if is_permission_question(event):
            question = " ".join(str(event.get("message") or "the agent asks for a permission").split())
            _write(path, {"question": question[:MAX_QUESTION], "at": time.time() if now is None else now})
    elif name in CLEARING:
        clear_question(work_dir)


def clear_question(work_dir: str) -> None:
    """The agent no longer waits (its turn went on, or a message answered it)."""
    try:
        os.unlink(marker_path(work_dir))
    except OSError:
        pass


def read_question(work_dir: str) -> str | None:
    """The pending question of the agent, None when it waits for nothing (or the file is unreadable)."""
    try:
        with open(marker_path(work_dir), encoding="utf-8") as handle_:
            data = json.loads(handle_.read(MAX_INPUT))
    except (OSError, ValueError):
        return None
    question = data.get("question") if isinstance(data, dict) else None
    return question if isinstance(question, str) and question else None


def _write(path: str, data: Mapping[str, Any]) -> None:
    write_private(path, json.dumps(data), dir_mode=0o777)  # the state directory's usual mode


def main(argv: list[str] | None = None) -> int:
    """The hook: one event as JSON on stdin."""
    parser = argparse.ArgumentParser(prog="python3 -m agentproxy.waiting")
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args(argv)
    try:
        event = json.loads(sys.stdin.read(MAX_INPUT) or "{}")
        if isinstance(event, dict):
            handle(event, args.work_dir)
    except Exception:  # never in the agent's way
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
