"""The interactive ``agentproxy chat`` in a real pseudo-terminal, as a person uses it: type a
line, watch the reply stream in, leave with Ctrl-C. The server wants an API key, given
on the command line, which must not stay visible in the process's command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from .conftest import ADMIN_KEY, cli_env

pytestmark = pytest.mark.slow


def test_type_a_line_see_the_reply_streamed_and_leave_with_ctrl_c(keyed_server, tmp_path):
    keyed_server.call("POST", "/sessions/tty/agents", {"id": "t1"})
    keyed_server.wait_for(lambda agents: any(a["id"] == "t1" and a["status"] == "ready" for a in agents),
                          what="t1 ready")
    transcript = (tmp_path / "chat.txt").open("w")
    child = pexpect.spawn(sys.executable, ["-m", "agentproxy", "chat", "tty", "t1", "--api-key", ADMIN_KEY],
                          env=cli_env(keyed_server), dimensions=(30, 120), encoding="utf-8", timeout=60,
                          logfile=transcript)
    try:
        child.expect_exact(f"Chat with tty/t1 at {keyed_server.url}.")
        cmdline = Path(f"/proc/{child.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert ADMIN_KEY not in cmdline and "--api-key ***" in cmdline, cmdline
        child.expect_exact("agentproxy echo agent")  # the conversation so far
        child.expect_exact("[agent stable]")
        child.expect_exact("> ")
        child.sendline("hello from a terminal")
        child.expect_exact("[agent running]")
        child.expect_exact("echo: hello from a terminal")
        child.expect_exact("[agent stable]")
        child.expect_exact("> ")
        child.sendintr()  # Ctrl-C
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
        assert "Traceback" not in (child.before or "")
    finally:
        if child.isalive():
            child.terminate(force=True)
        transcript.close()
    typed = (tmp_path / "chat.txt").read_text()
    assert ADMIN_KEY not in typed
    assert typed.count("hello from a terminal") >= 1
