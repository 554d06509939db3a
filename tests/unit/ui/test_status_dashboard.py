"""What the dashboard says of an agent's status (Debian's Chromium through Playwright, a real
local-mode server, the real agentapi):

- a starting agent shows the steps of its start as they come (``GET .../progress``), then,
  once ready, how long the start took; a start that fails shows its steps and the reason;
- an agent whose program asks its user for a permission is marked in the list and shows the
  question, until it is answered: the real Claude Code, asked to run a tool in permission
  mode ``default``, its ``Notification`` hook set in the prepared home. The model is the tests'
  stand-in (:mod:`tests.model_standin`), a process of its own: the model's API is out of reach.

A real agentapi starts in a moment on this machine, too fast to see it starting: its binary
here is a gate in front of the real one, which waits for a file the test creates (only for
agents whose environment names one), so the test decides when the start goes on."""

from __future__ import annotations

import re
import secrets
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from agentproxy.agentapi import locate

from ..live_server import LiveServer, running_server
from .support import READY_TIMEOUT, real_errors, row

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[3]
SLOW = 180_000
"""Claude Code takes seconds to start on a loaded machine (milliseconds)."""
KEY = "sk-ant-standin-" + secrets.token_hex(24)


@pytest.fixture(scope="module")
def gated_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    directory = tmp_path_factory.mktemp("serve-ui-steps")
    real = locate()
    assert real, "agentapi is not installed: `bin/just agentapi`"
    gate = directory / "gated-agentapi"
    gate.write_text("#!/bin/sh\n"
                    'if [ -n "$START_GATE" ]; then\n'
                    '  while [ ! -e "$START_GATE" ]; do sleep 0.1; done\n'
                    "fi\n"
                    f'exec {shlex.quote(real)} "$@"\n')
    gate.chmod(gate.stat().st_mode | stat.S_IXUSR)
    settings = {"local_mode": {"agentapi_binary": str(gate),
                               "supervision": {"backoff_initial": "1s", "backoff_max": "1s", "crash_loop_failures": 3,
                                               "start_timeout": "300s"}},
                "agents": {"commands": {"echo": [sys.executable, "-m", "agentproxy.demo_agent"],
                                        "broken": ["sh", "-c", "echo 'this agent cannot start' >&2; exit 3"]}}}
    with running_server(directory, settings=settings) as live:
        yield live


def steps(page):
    return page.locator("#agent-steps-list .step")


def test_a_starting_agent_shows_its_steps_as_they_come(gated_server, page, shot, tmp_path):
    go = tmp_path / "go"
    gated_server.call("POST", "/sessions/steps/agents", {"id": "slow", "env": {"START_GATE": str(go)}})
    page.goto(gated_server.url + "/ui/")
    expect(page.locator("#connection")).to_have_text("live")
    row(page, "steps", "slow").click()
    expect(page.locator("#agent-status")).to_have_text("starting")
    box = page.locator("#agent-steps")
    expect(box).to_be_visible()
    expect(box).to_have_attribute("open", "")
    expect(box).to_have_attribute("data-state", "starting")
    expect(steps(page).first).to_have_attribute("data-step", "process_started")
    expect(page.locator("#agent-steps-summary")).to_contain_text("Starting… process started")
    shot("11-starting-steps")

    go.touch()  # agentapi starts now
    expect(row(page, "steps", "slow").locator(".badge")).to_have_text("ready", timeout=READY_TIMEOUT)
    expect(box).to_have_attribute("data-state", "ready", timeout=READY_TIMEOUT)
    assert [s.get_attribute("data-step") for s in steps(page).all()] == [
        "process_started", "agentapi_answering", "restored", "ready"]
    expect(page.locator("#agent-steps-summary")).to_contain_text("Started in")
    expect(box).not_to_have_attribute("open", "")  # folded once ready
    shot("12-started")
    gated_server.call("DELETE", "/sessions/steps/agents/slow?purge=true")
    assert real_errors(page) == []


def test_a_failing_start_shows_its_steps_and_the_reason(gated_server, page, shot):
    page.goto(gated_server.url + "/ui/")
    expect(page.locator("#connection")).to_have_text("live")
    gated_server.call("POST", "/sessions/steps/agents", {"id": "broken", "agent": "broken"})
    row(page, "steps", "broken").click()
    expect(row(page, "steps", "broken").locator(".badge")).to_have_text("failed", timeout=READY_TIMEOUT)
    box = page.locator("#agent-steps")
    expect(box).to_have_attribute("data-state", "failed", timeout=READY_TIMEOUT)
    expect(box).to_have_attribute("open", "")
    # The start the crash loop ended in: its last step is the agent's reason and message.
    expect(steps(page).last).to_have_attribute("data-step", "failed")
    expect(steps(page).last).to_contain_text("CrashLoopBackOff")
    expect(steps(page).last.locator(".step-message")).to_have_attribute("title", re.compile("this agent cannot start"))
    expect(page.locator("#agent-steps-summary")).to_contain_text("Start failed after")
    shot("13-start-failed")
    gated_server.call("DELETE", "/sessions/steps/agents/broken?purge=true")
    assert real_errors(page) == []


@pytest.fixture(scope="module")
def asking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Claude Code in permission mode ``default`` (it asks before it runs Bash), against the
    model stand-in run as a process of its own (Playwright's synchronous API keeps the thread)."""
    model = subprocess.Popen([sys.executable, "-m", "tests.model_standin"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
    try:
        assert model.stdout is not None
        url = model.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        settings = {"agents": {"claude": {"base_url": url, "permission_mode": "default",
                                          "api_key_env": "AGENTPROXY_TEST_MODEL_KEY"}}}
        with running_server(tmp_path_factory.mktemp("serve-ui-asking"), settings=settings,
                            env={"AGENTPROXY_TEST_MODEL_KEY": KEY}) as live:
            yield live
    finally:
        model.terminate()
        model.wait(timeout=20)


def test_an_agent_waiting_for_its_user_is_marked_until_answered(asking_server, page, shot):
    page.goto(asking_server.url + "/ui/")
    expect(page.locator("#connection")).to_have_text("live")
    asking_server.call("POST", "/sessions/asks/agents", {"id": "c1", "agent": "claude"})
    row(page, "asks", "c1").click()
    box = page.get_by_label("Message", exact=True)
    expect(box).to_be_enabled(timeout=SLOW)  # ready, and Claude Code shows its prompt
    token = secrets.token_hex(8)
    box.fill(f"please write-file proof.txt {token}")
    box.press("Enter")

    mark = row(page, "asks", "c1").locator(".waiting-mark")
    expect(mark).to_be_visible(timeout=SLOW)
    expect(row(page, "asks", "c1").locator(".badge")).to_have_text("waiting_input")
    question = page.locator("#agent-question")
    expect(question).to_contain_text("Waiting for input:")
    agent = asking_server.call("GET", "/sessions/asks/agents/c1")
    assert agent["status"] == "waiting_input" and agent["question"], agent
    expect(question).to_have_text(f"Waiting for input: {agent['question']}")
    expect(mark).to_have_attribute("title", agent["question"])
    shot("14-waiting-for-input")

    # Enter takes the dialog's first choice, yes (a keystroke, which the chat box does not send).
    asking_server.call("POST", "/sessions/asks/agents/c1/api/message", {"content": "\r", "type": "raw"})
    expect(mark).to_have_count(0, timeout=SLOW)
    expect(question).to_be_hidden()
    expect(row(page, "asks", "c1").locator(".badge")).to_have_text("ready", timeout=SLOW)
    shot("15-answered")
    asking_server.call("DELETE", "/sessions/asks/agents/c1?purge=true")
    assert real_errors(page) == []
