"""The echo demo agent: agentapi's keystrokes in, ``echo: <text>`` out, on a terminal and
without one, and end to end as a supervised agent."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import aiohttp

from agentproxy.demo_agent import LineEditor, clean, reply
from tests.conversation import agent_said, exchanges, say

from .conftest import spec, wait_ready

AGENTAPI_KEYS = "x\x08\x1b[200~{}\x1b[201~\r"
"""How agentapi types a user message."""


def test_the_editor_turns_agentapi_keystrokes_into_the_message():
    echoed: list[str] = []
    editor = LineEditor(echoed.append)
    assert editor.feed(AGENTAPI_KEYS.format("fix the tests")) == ["fix the tests"]
    assert "".join(echoed) == "x\b \bfix the tests"
    assert clean(AGENTAPI_KEYS.format("hi")[:-1]) == "hi"


def test_the_editor_keeps_pasted_newlines_and_survives_split_sequences():
    editor = LineEditor()
    keys = AGENTAPI_KEYS.format("line one\nline two")
    messages = [m for i in range(len(keys)) for m in editor.feed(keys[i])]  # one character at a time
    assert messages == ["line one\nline two"]
    assert editor.feed("ab\x7fc\x1b[A\r") == ["ac"]  # delete erases, an arrow key is ignored
    assert editor.feed("\r") == [""]
    assert reply("x") == "echo: x"


def test_without_a_terminal_it_answers_each_message_and_ends_with_its_input():
    keys = AGENTAPI_KEYS.format("hello") + AGENTAPI_KEYS.format("again")
    out = subprocess.run([sys.executable, "-m", "agentproxy.demo_agent"], input=keys.encode(),
                         capture_output=True, timeout=20).stdout.decode()
    assert out.splitlines()[1:] == ["> hello", "echo: hello", "> again", "echo: again", "> "]


def test_on_a_terminal_it_echoes_typing_before_the_return_and_replies_after():
    fd, terminal = pty.openpty()
    agent = subprocess.Popen([sys.executable, "-m", "agentproxy.demo_agent"], stdin=terminal, stdout=terminal,
                             stderr=terminal, start_new_session=True)
    os.close(terminal)
    try:
        assert "> " in read_until(fd, "> ")
        os.write(fd, b"x\x08\x1b[200~hi there\x1b[201~")
        # agentapi waits for the screen to change before it presses return
        assert "hi there" in read_until(fd, "hi there")
        os.write(fd, b"\r")
        assert "echo: hi there" in read_until(fd, "echo: hi there\r\n> ")
        agent.send_signal(signal.SIGINT)  # how agentapi stops its agent
        assert agent.wait(timeout=20) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        os.close(fd)


def read_until(fd: int, text: str, timeout: float = 20.0) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while text.encode() not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen.decode(errors="replace")


async def test_the_default_echo_agent_runs_supervised(backend, settings):
    await backend.create(spec(settings, "d1", "echo"))
    state = await wait_ready(backend, "d1")
    assert state.upstream is not None
    async with aiohttp.ClientSession() as client:
        await agent_said(client, state.upstream, "echo agent")  # its greeting, agentapi's message 0
        conversation = await say(client, state.upstream, "ping")
    assert exchanges(conversation) == [("user", "ping"), ("agent", "echo: ping")]
