"""A Claude Code agent in the dashboard (Debian's Chromium through Playwright) and in
``agentproxy chat`` (a real pseudo-terminal): its answer to the first message shows, and a
prompt typed after it is answered too.

Real ``agentproxy serve`` in local mode, the real agentapi and the real Claude Code
(``bin/just agents``); the model is the tests' stand-in (:mod:`tests.model_standin`), run
as a process of its own on 127.0.0.1: the model's API is out of reach of the tests."""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from playwright.sync_api import expect

from tests.model_standin import ANSWER_PREFIX

from ..live_server import LiveServer, clean_env, running_server
from .support import real_errors, row

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[3]
SLOW = 180_000
"""Claude Code takes seconds to start on a loaded machine (milliseconds)."""
KEY = "sk-ant-standin-" + secrets.token_hex(24)


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    """The model stand-in's URL (a process of its own: Playwright's synchronous API keeps
    the test's thread)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.model_standin"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def claude_server(model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = {"agents": {"claude": {"base_url": model, "permission_mode": "dontAsk",
                                      "api_key_env": "AGENTPROXY_TEST_MODEL_KEY"}}}
    with running_server(tmp_path_factory.mktemp("serve-claude-ui"), settings=settings,
                        env={"AGENTPROXY_TEST_MODEL_KEY": KEY}) as live:
        yield live


def test_the_dashboard_shows_claudes_answer_and_takes_the_next_prompt(claude_server, page, shot):
    page.goto(claude_server.url + "/ui/")
    page.get_by_label("Session").fill("cc")
    page.get_by_label("Agent id").fill("c1")
    page.get_by_label("Type").fill("claude")
    page.get_by_label("First message").fill("hello from the dashboard")
    page.get_by_role("button", name="Create").click()
    expect(row(page, "cc", "c1").locator(".badge")).to_have_text("ready", timeout=SLOW)
    first = page.locator("#messages .role-agent .text", has_text=ANSWER_PREFIX + "hello from the dashboard")
    expect(first).to_be_visible(timeout=SLOW)
    expect(page.locator("#messages .role-user .text").first).to_have_text("hello from the dashboard")
    shot("21-claude-first-answer")

    box = page.get_by_label("Message", exact=True)
    expect(box).to_be_enabled(timeout=SLOW)
    box.fill("and a second prompt")
    box.press("Enter")
    second = page.locator("#messages .role-agent .text", has_text=ANSWER_PREFIX + "and a second prompt")
    expect(second).to_be_visible(timeout=SLOW)
    shot("22-claude-second-answer")
    assert KEY not in page.content()
    claude_server.call("DELETE", "/sessions/cc/agents/c1?purge=true")
    assert real_errors(page) == []


def test_agentproxy_chat_shows_claudes_answer_and_takes_the_next_prompt(claude_server, tmp_path):
    claude_server.call("POST", "/sessions/tty/agents", {"id": "c2", "agent": "claude", "message": "hello chat"})
    claude_server.wait_for(lambda agents: any(a["id"] == "c2" and a["status"] == "ready" for a in agents),
                           timeout=SLOW / 1000, what="c2 ready")
    transcript = (tmp_path / "chat.txt").open("w")
    child = pexpect.spawn(sys.executable, ["-m", "agentproxy", "chat", "tty", "c2"],
                          env={**clean_env(), "AGENTPROXY_URL": claude_server.url}, dimensions=(30, 120),
                          encoding="utf-8", timeout=SLOW / 1000, logfile=transcript)
    try:
        child.expect_exact(f"Chat with tty/c2 at {claude_server.url}.")
        child.expect_exact(ANSWER_PREFIX + "hello chat")  # the conversation so far, or as it streams in
        child.expect_exact("[agent stable]")
        child.expect_exact("> ")
        child.sendline("typed in the terminal")
        child.expect_exact(ANSWER_PREFIX + "typed in the terminal")
        child.expect_exact("[agent stable]")
        child.sendintr()  # Ctrl-C
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0, child.before
    finally:
        if child.isalive():
            child.terminate(force=True)
        transcript.close()
    assert KEY not in (tmp_path / "chat.txt").read_text()
    claude_server.call("DELETE", "/sessions/tty/agents/c2?purge=true")
