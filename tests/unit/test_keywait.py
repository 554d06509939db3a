"""The apiKeyHelper of a pre-started Claude Code member: it waits for the key the binding writes."""

from __future__ import annotations

import subprocess
import threading
import time

from agentproxy.agenthome import key_file_helper
from agentproxy.keywait import main, read_key


def test_a_key_is_read_whole_and_a_missing_or_empty_file_is_none(tmp_path):
    path = tmp_path / "api-key"
    assert read_key(str(path)) is None
    path.write_text("")
    assert read_key(str(path)) is None
    path.write_text("sk-ant-abc\n")
    assert read_key(str(path)) == "sk-ant-abc"


def test_the_helper_prints_the_key_once_it_is_written(tmp_path, capsys):
    path = tmp_path / "api-key"
    threading.Timer(0.3, path.write_text, args=("sk-ant-late",)).start()
    began = time.monotonic()
    assert main([str(path), "--wait", "30"]) == 0
    assert capsys.readouterr().out == "sk-ant-late" and time.monotonic() - began >= 0.25


def test_the_helper_gives_up_after_its_wait_printing_nothing(tmp_path, capsys):
    assert main([str(tmp_path / "never"), "--wait", "0.2"]) == 1
    assert capsys.readouterr().out == ""


def test_the_command_claude_code_runs_is_a_shell_line_for_any_path(tmp_path):
    path = tmp_path / "a dir with 'quotes'" / "api-key"
    path.parent.mkdir()
    path.write_text("sk-ant-quoted")
    out = subprocess.run(["/bin/sh", "-c", key_file_helper(str(path))], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "sk-ant-quoted", out.stderr
