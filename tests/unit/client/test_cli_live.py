"""``agentproxy agents ...`` and ``agentproxy chat -m`` against a real local-mode server
(real agentapi, echo demo agent), run as a user would: a separate process, output
read from its stdout and stderr, exit statuses as documented."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from testenv.ports import free_port

from .support import ADMIN_KEY, agentproxy, cli_env, one_error_line

pytestmark = pytest.mark.slow


def table_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert lines[0].split() == ["SESSION", "ID", "TYPE", "STATUS", "REASON", "RESTARTS", "AGE"], text
    return [line.split() for line in lines[1:]]


def test_create_wait_ls_get_chat_logs_rm(server):
    created = agentproxy(server, "agents", "create", "cli", "--id", "c1", "--env", "GREETING=hi", "--wait")
    assert created.returncode == 0, created.stderr
    assert "\x1b" not in created.stderr  # a pipe gets plain lines, never a redrawn display
    progress = created.stderr.splitlines()
    assert all(line.startswith("cli/c1: ") for line in progress) and "cli/c1: ready" in progress, created.stderr
    # Each step of the start on a line of its own, in order, beside the status lines.
    steps = [line.split()[2] for line in progress if line.startswith("cli/c1: step ")]
    assert steps == ["process_started", "agentapi_answering", "restored", "ready"], created.stderr
    assert table_rows(created.stdout)[0][:4] == ["cli", "c1", "echo", "ready"]

    listed = agentproxy(server, "agents", "ls", "--session", "cli")
    assert listed.returncode == 0, listed.stderr
    rows = table_rows(listed.stdout)
    assert [r[:6] for r in rows] == [["cli", "c1", "echo", "ready", "<none>", "0"]]

    as_json = agentproxy(server, "agents", "ls", "--session", "cli", "-o", "json")
    agents = json.loads(as_json.stdout)["agents"]
    assert [(a["id"], a["status"], a["url"]) for a in agents] == [("c1", "ready", "/sessions/cli/agents/c1/api/")]
    assert yaml.safe_load(agentproxy(server, "agents", "get", "cli", "c1", "-o", "yaml").stdout)["id"] == "c1"
    filtered = agentproxy(server, "agents", "ls", "--status", "failed", "--session", "cli")
    assert filtered.stdout == "No agents found.\n"

    chat = agentproxy(server, "chat", "cli", "c1", "-m", "hello <b>there</b>", "--timeout", "60")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "echo: hello <b>there</b>\n"

    logs = agentproxy(server, "agents", "logs", "cli", "c1", "--tail", "200")
    assert logs.returncode == 0, logs.stderr
    assert "Starting server on port" in logs.stdout  # agentapi's own log, in the agent's output

    removed = agentproxy(server, "agents", "rm", "cli", "c1")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.startswith("agent cli/c1 deleted")
    gone = agentproxy(server, "agents", "get", "cli", "c1")
    assert gone.returncode == 4
    assert one_error_line(gone) == "agentproxy: error: not_found (404): agent 'c1' not found in session 'cli'"


def test_errors_are_one_line_with_documented_exit_statuses(server):
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    unreachable = agentproxy(server, "agents", "ls", "--server", nobody)
    assert unreachable.returncode == 3
    expected = f"agentproxy: error: cannot reach the agentproxy server at {nobody}: "
    assert one_error_line(unreachable).startswith(expected)

    bad_url = agentproxy(server, "agents", "ls", "--server", "localhost:8080")
    assert bad_url.returncode == 2
    assert "--server 'localhost:8080': must be an http:// or https:// URL" in one_error_line(bad_url)

    bad_id = agentproxy(server, "agents", "create", "cli", "--id", "Not_Valid")
    assert bad_id.returncode == 1
    assert one_error_line(bad_id).startswith("agentproxy: error: invalid (400): id: must be a DNS-1123 label")

    bad_env = agentproxy(server, "agents", "create", "cli", "--env", "NOVALUE")
    assert bad_env.returncode == 2 and "expected NAME=VALUE" in one_error_line(bad_env)

    unknown_type = agentproxy(server, "agents", "create", "cli", "--type", "nosuch")
    assert unknown_type.returncode == 1 and "unprocessable (422)" in one_error_line(unknown_type)

    purge = agentproxy(server, "agents", "rm", "cli", "x1", "--purge")  # stdin is not a terminal
    assert purge.returncode == 2 and "confirm with --yes" in one_error_line(purge)
    missing = agentproxy(server, "agents", "rm", "cli", "x1", "--purge", "--yes")
    assert missing.returncode == 4

    not_ready = agentproxy(server, "chat", "cli", "x1", "-m", "hi", "--timeout", "1")
    assert not_ready.returncode == 4 and "not_found (404)" in one_error_line(not_ready)
    assert not [a for a in server.agents() if a["session"] == "cli"]  # nothing was created


def test_suspend_and_resume_keep_the_conversation(server):
    created = agentproxy(server, "agents", "create", "sus", "--id", "s1", "--message", "hello", "--wait")
    assert created.returncode == 0, created.stderr
    chat = agentproxy(server, "chat", "sus", "s1", "-m", "again", "--timeout", "60")
    assert chat.returncode == 0 and chat.stdout == "echo: again\n", chat.stderr

    suspended = agentproxy(server, "agents", "suspend", "sus", "s1")
    assert suspended.returncode == 0, suspended.stderr
    assert suspended.stdout.startswith("agent sus/s1 suspended (Suspended: suspended through the API at ")
    listed = agentproxy(server, "agents", "ls", "--session", "sus", "--status", "suspended")
    assert [r[:5] for r in table_rows(listed.stdout)] == [["sus", "s1", "echo", "suspended", "Suspended"]]
    again = agentproxy(server, "agents", "suspend", "sus", "s1", "-o", "json")  # a no-op
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "suspended"

    resumed = agentproxy(server, "agents", "resume", "sus", "s1", "--wait")
    assert resumed.returncode == 0, resumed.stderr
    assert "sus/s1: ready" in resumed.stderr.splitlines(), resumed.stderr
    steps = [line.split()[2] for line in resumed.stderr.splitlines() if line.startswith("sus/s1: step ")]
    assert steps[0] == "process_started" and steps[-1] == "ready", resumed.stderr
    assert table_rows(resumed.stdout)[0][:4] == ["sus", "s1", "echo", "ready"]
    # The conversation is back (agentapi loads it once the agent shows its prompt).
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(server.url + "/sessions/sus/agents/s1/api/messages", timeout=10) as response:
            said = [m["content"].strip() for m in json.loads(response.read())["messages"] if m["id"] != 0]
        if said == ["hello", "echo: hello", "again", "echo: again"]:
            break
        assert time.monotonic() < deadline, said
        time.sleep(0.1)
    missing = agentproxy(server, "agents", "resume", "sus", "nobody")
    assert missing.returncode == 4 and "not_found (404)" in one_error_line(missing)
    server.call("DELETE", "/sessions/sus/agents/s1")


def test_watch_prints_changes_until_ctrl_c(server):
    """``agents watch`` (``agents ls --watch``) follows ``/events``."""
    server.call("POST", "/sessions/w/agents", {"id": "w1"})
    server.wait_for(lambda agents: any(a["id"] == "w1" and a["status"] == "ready" for a in agents), what="w1 ready")
    watch = subprocess.Popen([sys.executable, "-m", "agentproxy", "agents", "watch", "--session", "w",
                              "-o", "json"], env=cli_env(server), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The list comes after the event stream is open: every change from then on is shown.
        listed = json.loads(watch.stdout.readline() or watch.stderr.read())
        assert (listed["id"], listed["status"]) == ("w1", "ready")
        server.call("DELETE", "/sessions/w/agents/w1")
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + 60
        while not seen or seen[-1] != ("deleted", "stopped"):
            assert time.monotonic() < deadline, seen
            line = watch.stdout.readline()
            assert line, watch.stderr.read()
            agent = json.loads(line)
            assert (agent["session"], agent["id"]) == ("w", "w1")
            seen.append((agent["event"], agent["status"]))
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=10) == 0
        assert watch.stderr.read() == ""
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()


def test_logs_follow_shows_new_lines(server):
    server.call("POST", "/sessions/lf/agents", {"id": "f1"})
    server.wait_for(lambda agents: any(a["id"] == "f1" and a["status"] == "ready" for a in agents), what="f1 ready")
    follow = subprocess.Popen([sys.executable, "-m", "agentproxy", "agents", "logs", "lf", "f1", "-f",
                               "--interval", "0.3"], env=cli_env(server), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = follow.stdout.readline()
        assert first, follow.stderr.read()
        # Open the agent's event stream once: agentapi logs a new subscriber.
        with urllib.request.urlopen(server.url + "/sessions/lf/agents/f1/api/events", timeout=10) as stream:
            stream.readline()
        deadline = time.monotonic() + 30
        seen: list[str] = []
        while not any("New subscriber" in line for line in seen):
            assert time.monotonic() < deadline, seen
            seen.append(follow.stdout.readline())
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    server.call("DELETE", "/sessions/lf/agents/f1")


def test_chat_reads_piped_lines_and_ends_when_answered(server):
    server.call("POST", "/sessions/pipe/agents", {"id": "p1"})
    server.wait_for(lambda agents: any(a["id"] == "p1" and a["status"] == "ready" for a in agents), what="p1 ready")
    chat = agentproxy(server, "chat", "pipe", "p1", stdin="first line\nsecond line\n", timeout=120)
    assert chat.returncode == 0, chat.stderr
    out = chat.stdout
    assert out.index("echo: first line") < out.index("echo: second line"), out
    assert "[agent stable]" in out and "[agent running]" in out
    server.call("DELETE", "/sessions/pipe/agents/p1")


def test_keys_come_from_the_environment_and_are_never_shown(keyed_server):
    missing = agentproxy(keyed_server, "agents", "ls")
    assert missing.returncode == 1
    assert one_error_line(missing).startswith("agentproxy: error: unauthorized (401): an API key is required")
    wrong = agentproxy(keyed_server, "agents", "ls", "--api-key", "not-the-key-31337")
    assert wrong.returncode == 1 and "not-the-key-31337" not in wrong.stderr + wrong.stdout
    assert "unauthorized (401)" in one_error_line(wrong)
    ok = agentproxy(keyed_server, "agents", "ls", key=ADMIN_KEY)
    assert ok.returncode == 0 and ok.stdout == "No agents found.\n"


def test_wait_times_out_then_reports_the_failure(server):
    # A local agent is never ready in the create's own answer (readiness is probed after it),
    # so a wait of a millisecond times out whatever the machine's speed. (agentapi answers
    # /status even for an agent that is about to crash, so a crashing agent can look ready
    # for a moment: it cannot time a wait out reliably.)
    waited = agentproxy(server, "agents", "create", "bad", "--id", "b1", "--type", "broken", "--wait",
                        "--timeout", "0.001")
    assert waited.returncode == 6, waited.stderr
    last = waited.stderr.splitlines()[-1]
    assert last.startswith("agentproxy: error: agent bad/b1 is not ready after 0.001s; last status: starting")
    # The type `broken` exits at once: agentapi exits with it, the agent restarts with a
    # growing back-off and, after five quick failures, is failed for good.
    # b0 has been crash-looping since the server started; a repeated create answers its state.
    server.wait_for(lambda agents: any(a["id"] == "b0" and a["status"] == "failed" for a in agents),
                    timeout=90, what="b0 failed")
    again = agentproxy(server, "agents", "create", "bad", "--id", "b0", "--type", "broken", "--wait")
    assert again.returncode == 5
    assert again.stderr.splitlines()[-1].startswith("agentproxy: error: agent bad/b0 failed (CrashLoopBackOff: ")
    assert len(again.stderr.splitlines()[-1]) < 400
