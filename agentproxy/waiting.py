"""Is a Claude Code agent waiting for its user? What its own hooks say, kept in a file.

agentapi cannot tell an agent that stopped to ask for a permission from one that finished
its turn: both are ``stable``. Claude Code knows, and tells its hooks: the prepared home
(:mod:`agentproxy.agenthome`) runs ``python3 -m agentproxy.waiting --work-dir DIR`` on

- ``Notification`` of a permission question (``notification_type`` ``permission_prompt``;
  Claude Code's idle reminder at the end of a turn is not one): the question's text is
  written to :data:`MARKER` in the agent's state directory;
- ``UserPromptSubmit`` (a new message), ``PostToolUse`` (the question was answered yes and
  the tool ran) and ``Stop`` (the turn ended, e.g. the answer was no): the file is removed.

In local mode the proxy reads the file when the agent's screen changes (agentapi's events) and shows
``waiting_input`` while the file holds a question; a message sent to the agent through the
proxy (the answer: a keystroke, or a new prompt) clears it at once, so a tool that runs for a
minute after a yes never shows ``waiting_input`` in between. Standard library only: the
agent image runs it without agentproxy's dependencies.

In a pod the proxy cannot read the file: with :data:`URL_VARIABLE` and :data:`TOKEN_VARIABLE`
in its environment (k8s mode's ``k8s_mode.waiting_url``) the hook also reports each change to
the proxy (:func:`report`), ``POST`` :data:`REPORT_PATH` with ``{"question": ...}`` (``null``:
no longer waiting), signed by the pod's own ServiceAccount token from the file the kubelet
keeps current. The body names no agent: the token says which pod sent it, so a pod can only
speak for itself. A clearing event is reported only when a question was pending (every
``PostToolUse`` would be a request otherwise). It prints nothing (what a
``UserPromptSubmit`` hook prints would become part of the prompt) and always exits 0, so a
failure here never stops the agent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
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
URL_VARIABLE = "AGENTPROXY_WAITING_URL"
"""Where the hook reports (the proxy's :data:`REPORT_PATH`), in a pod."""
TOKEN_VARIABLE = "AGENTPROXY_WAITING_TOKEN_FILE"
"""The file of the pod's ServiceAccount token for the proxy's audience."""
REPORT_PATH = "/hooks/waiting"
"""The proxy's route the hooks of agents in pods report to."""
REPORT_TIMEOUT = 5.0
"""Seconds a report may take (the agent waits for its hook meanwhile)."""


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


def handle(event: Mapping[str, Any], work_dir: str, now: float | None = None) -> tuple[str | None] | None:
    """Keep or clear the pending question after one hook event. What changed, for the proxy
    (:func:`report`): ``(question,)`` for a new question, ``(None,)`` when a pending one is
    gone, None when nothing changed."""
    name = event.get("hook_event_name")
    path = marker_path(work_dir)
    if name == ASKING:
        if is_permission_question(event):
            question = " ".join(str(event.get("message") or "the agent asks for a permission").split())
            question = question[:MAX_QUESTION]
            _write(path, {"question": question, "at": time.time() if now is None else now})
            return (question,)
    elif name in CLEARING:
        if os.path.exists(path):
            clear_question(work_dir)
            return (None,)
    return None


def report_request(url: str, token: str, question: str | None) -> urllib.request.Request:
    """The report of a change to the proxy at ``url`` (its :data:`REPORT_PATH`)."""
    return urllib.request.Request(url, data=json.dumps({"question": question}).encode(), method="POST",
                                  headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})


def parse_report(body: Any) -> str | None:
    """The question of a report's JSON body (``{"question": TEXT}``; ``null``: none any more);
    ValueError naming the rule otherwise."""
    if not isinstance(body, dict) or "question" not in body:
        raise ValueError('must be a JSON object {"question": TEXT or null}')
    question = body["question"]
    if question is not None and not isinstance(question, str):
        raise ValueError("must be a string or null")
    return question or None


def report(question: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """Tell the proxy of ``environ``'s :data:`URL_VARIABLE` what the agent waits for; True when it
    took the report. Without the variables (local mode) there is no one to tell."""
    url, token_file = environ.get(URL_VARIABLE), environ.get(TOKEN_VARIABLE)
    if not url or not token_file:
        return False
    with open(token_file, encoding="utf-8") as file:  # read each time: the kubelet renews it
        token = file.read(MAX_INPUT).strip()
    with urllib.request.urlopen(report_request(url, token, question), timeout=REPORT_TIMEOUT) as answer:
        return bool(200 <= answer.status < 300)


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
            changed = handle(event, args.work_dir)
            if changed is not None:
                report(changed[0])
    except Exception:  # never in the agent's way
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
