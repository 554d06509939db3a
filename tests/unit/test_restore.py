"""The rule of when an agent's conversation is back (both modes), and the pod's check."""

from __future__ import annotations

import json
import subprocess
import sys

from agentproxy.restore import check, read_saved_messages, restored, saved_messages
from testenv.ports import free_port


def state(count: int, version: int = 1) -> str:
    """An agentapi state file as v0.12 writes it, with ``count`` messages."""
    messages = [{"id": i, "message": f"m{i}", "role": "agent" if i % 2 == 0 else "user",
                 "time": "2026-01-01T00:00:00Z"} for i in range(count)]
    return json.dumps({"version": version, "messages": messages, "initial_prompt": "hello",
                       "initial_prompt_sent": True})


def listed(count: int) -> dict:
    """agentapi's ``GET /messages`` answer with ``count`` messages."""
    return {"$schema": "x", "messages": [{"id": i, "content": "", "role": "agent", "time": "t"}
                                         for i in range(count)]}


def test_the_messages_a_state_file_holds_are_counted():
    assert saved_messages(state(5)) == 5
    assert saved_messages(state(5).encode()) == 5
    assert saved_messages(state(0)) == 0


def test_what_agentapi_would_not_load_holds_nothing_to_wait_for():
    assert saved_messages(state(5, version=2)) == 0  # agentapi refuses other versions
    assert saved_messages("{not json") == 0
    assert saved_messages(b"\xff\xfe") == 0
    assert saved_messages("[]") == 0
    assert saved_messages('{"version": 1, "messages": {}}') == 0


def test_a_missing_or_unreadable_file_holds_nothing(tmp_path):
    assert read_saved_messages(str(tmp_path / "absent.json")) == 0
    assert read_saved_messages(str(tmp_path)) == 0  # a directory
    (tmp_path / "s.json").write_text(state(4))
    assert read_saved_messages(str(tmp_path / "s.json")) == 4


def test_the_conversation_is_back_when_agentapi_holds_at_least_the_saved_messages():
    assert not restored(4, listed(1))  # only the startup screen: not loaded yet
    assert not restored(4, listed(3))
    assert restored(4, listed(4))
    assert restored(4, listed(6))  # the conversation went on after the load
    assert not restored(4, {"messages": None})
    assert not restored(4, "garbage")


def test_nothing_saved_or_only_a_startup_screen_needs_no_wait():
    assert restored(0, listed(1))
    assert restored(1, listed(1))
    assert restored(0, "garbage")


def test_the_check_says_why_when_nothing_answers(tmp_path):
    (tmp_path / "s.json").write_text(state(4))
    problem = check(free_port(), str(tmp_path / "s.json"), timeout=2)
    assert problem is not None and "does not answer" in problem


def test_the_check_runs_as_a_module_with_a_one_line_reason(tmp_path):
    """As the pod's startup probe runs it: exit 1 and one line while nothing answers."""
    (tmp_path / "s.json").write_text(state(4))
    done = subprocess.run([sys.executable, "-m", "agentproxy.restore", "--port", str(free_port()),
                           "--state-file", str(tmp_path / "s.json"), "--timeout", "2"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "does not answer" in done.stderr
