"""What Claude Code's hooks leave for agentproxy (the pending question), how the prepared home
installs them, and how a waiting agent is shown."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from agentproxy.agenthome import claude_settings, waiting_hook_command, with_waiting_hooks
from agentproxy.api.model import agent_json
from agentproxy.backends.agent_state import AgentState, AgentStatus, visible
from agentproxy.spec import AgentSpec, Resources
from agentproxy.waiting import HOOK_EVENTS, handle, marker_path, read_question

PERMISSION = {"hook_event_name": "Notification", "notification_type": "permission_prompt",
              "message": "Claude needs your permission to use Bash"}


def test_a_permission_question_is_kept_until_the_turn_goes_on(tmp_path: Path):
    work = str(tmp_path)
    assert read_question(work) is None
    handle({"hook_event_name": "Notification", "notification_type": "idle_prompt",
            "message": "Claude is waiting for your input"}, work)
    assert read_question(work) is None  # the end of a turn is not a question
    handle(PERMISSION, work, now=5.0)
    assert read_question(work) == "Claude needs your permission to use Bash"
    assert json.loads(Path(marker_path(work)).read_text())["at"] == 5.0
    for clearing in ("UserPromptSubmit", "PostToolUse", "Stop"):
        handle(PERMISSION, work)
        handle({"hook_event_name": clearing}, work)
        assert read_question(work) is None, clearing
    # Without notification_type (older versions), the message tells.
    handle({"hook_event_name": "Notification", "message": "Claude needs your permission to use Edit"}, work)
    assert read_question(work) == "Claude needs your permission to use Edit"
    Path(marker_path(work)).write_text("not json")
    assert read_question(work) is None


def test_the_hook_prints_nothing_and_never_fails(tmp_path: Path):
    for stdin in (json.dumps(PERMISSION), "garbage", "[1, 2]", ""):
        done = subprocess.run([sys.executable, "-m", "agentproxy.waiting", "--work-dir", str(tmp_path)],
                              input=stdin, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), stdin
    assert read_question(str(tmp_path)) == PERMISSION["message"]


def test_the_prepared_home_runs_the_hook_on_every_event_and_keeps_other_hooks():
    command = waiting_hook_command("/usr/bin/python3", "/data/work dir")
    assert command == "/usr/bin/python3 -m agentproxy.waiting --work-dir '/data/work dir'"
    theirs = {"Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
              "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]}]}
    once = with_waiting_hooks(theirs, command)
    twice = with_waiting_hooks(once, waiting_hook_command("/other/python3", "/data/work dir"))
    assert set(HOOK_EVENTS) <= set(twice) and twice["PreToolUse"] == theirs["PreToolUse"]
    stop = [h["command"] for group in twice["Stop"] for h in group["hooks"]]
    assert stop == ["notify-send done", "/other/python3 -m agentproxy.waiting --work-dir '/data/work dir'"]
    settings = claude_settings({}, permission_mode=None, hook_command=command)
    assert settings["hooks"]["Notification"][0]["hooks"][0]["command"] == command
    assert "hooks" not in claude_settings({}, permission_mode=None)


def test_a_ready_agent_with_a_question_is_shown_waiting_input():
    spec = AgentSpec(id="a1", session="s1", type="claude", command=("claude",),
                     resources=Resources("100m", "500m", "256Mi", "512Mi", "1Gi"))
    ready = AgentState(spec=spec, mode="local", status=AgentStatus.READY, created_at=datetime.now(UTC))
    asking = dataclasses.replace(ready, question="Claude needs your permission to use Bash")
    assert (agent_json(ready)["status"], agent_json(ready)["question"]) == ("ready", None)
    assert (agent_json(asking)["status"], agent_json(asking)["question"]) == ("waiting_input", asking.question)
    assert asking.shown_status is AgentStatus.WAITING_INPUT and visible(asking) != visible(ready)
    starting = dataclasses.replace(asking, status=AgentStatus.STARTING)
    assert (agent_json(starting)["status"], agent_json(starting)["question"]) == ("starting", None)
