"""The launcher with real processes: the real agentapi, the echo demo agent and the test
programs, a real binding listener on 127.0.0.1 talked to with raw sockets."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agentproxy.agenthome import QUIET_ENV
from agentproxy.launch import state_file
from agentproxy.launcher import (
    BOUND_VARIABLE,
    TOKEN_VARIABLE,
    BindingError,
    Saver,
    agentapi_port,
    agentapi_state_file,
    parse_binding,
    token_matches,
)
from tests.model_standin import ANSWER_PREFIX, ModelStandIn

from .support import PROGRAMS, port_block

ROOT = Path(__file__).resolve().parents[3]


def wait(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as it is; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def bind_request(token: str | None, body: bytes, path: str = "/bind", method: str = "POST") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: member\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def answers(port: int, path: str) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


class Launched:
    """A launcher process and what it was given."""

    def __init__(self, process: subprocess.Popen[bytes], work: Path, agent_port: int, bind_port: int,
                 token: str) -> None:
        self.process, self.work, self.agent_port, self.bind_port, self.token = (
            process, work, agent_port, bind_port, token)

    def family(self) -> list[psutil.Process]:
        try:
            return [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


@pytest.fixture
def launch(tmp_path: Path, launcher: str) -> Iterator[Callable[..., Launched]]:
    """Start launchers (``launcher`` is the real agentapi); every process they started ends with the test."""
    started: list[Launched] = []

    def start(program: list[str], *, warm: bool = True, save_interval: float = 0.0, token_in_env: bool = False,
              name: str = "a1", extra_env: dict[str, str] | None = None, prestart: bool = False,
              agent_type: str = "custom", claude_home: bool = False) -> Launched:
        work = tmp_path / name
        work.mkdir()
        low, _ = port_block()
        agent_port, bind_port = low, low + 1
        token = secrets.token_urlsafe(24)
        argv = [sys.executable, "-m", "agentproxy.launcher", "--work-dir", str(work),
                "--save-interval", str(save_interval), *(["--claude-home"] if claude_home else [])]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTAPI_", "AGENTPROXY_"))}
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra_env or {})
        if warm:
            argv += ["--bind", f"127.0.0.1:{bind_port}"]
            if token_in_env:
                env[TOKEN_VARIABLE] = token
            else:
                token_file = tmp_path / f"{name}.token"
                token_file.write_text(token)
                token_file.chmod(0o600)
                argv += ["--token-file", str(token_file)]
            if prestart:
                argv.append("--prestart")
        argv += ["--", launcher, "server", "--port", str(agent_port), "--type", agent_type,
                 "--state-file", state_file(str(work)), "--", *program]
        process = subprocess.Popen(argv, env=env, cwd=work, stdout=subprocess.DEVNULL,
                                   stderr=open(tmp_path / f"{name}.log", "wb"))
        one = Launched(process, work, agent_port, bind_port, token)
        started.append(one)
        return one

    yield start
    for one in started:
        family = one.family()
        for proc in family:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)
        one.process.wait(timeout=10)


ENV_PROGRAM = [sys.executable, str(PROGRAMS), "env"]
ECHO = [sys.executable, "-m", "agentproxy.demo_agent"]


def test_a_member_waits_and_only_its_token_binds(launch):
    member = launch(ENV_PROGRAM)
    wait(lambda: listening(member.bind_port), "the binding listener")
    assert not listening(member.agent_port)  # nothing of the agent runs before its binding
    body = json.dumps({"env": {"OWNER_SECRET": "s3cr3t", "AGENTPROXY_AGENT_ID": "a1"}}).encode()

    # Without the token, with another, with the token as a query or in another scheme: refused.
    assert status_of(raw(member.bind_port, bind_request(None, body))) == 401
    assert status_of(raw(member.bind_port, bind_request("x" + member.token, body))) == 401
    assert status_of(raw(member.bind_port, bind_request(member.token[:-1], body))) == 401
    assert status_of(raw(member.bind_port, bind_request(None, body, path=f"/bind?token={member.token}"))) == 404
    basic = bind_request(None, body).replace(b"\r\n\r\n", f"\r\nAuthorization: Basic {member.token}\r\n\r\n".encode(), 1)
    assert status_of(raw(member.bind_port, basic)) == 401
    # No route reads a binding back, with or without the token.
    for path in ("/bind", "/binding", "/env", "/"):
        assert status_of(raw(member.bind_port, bind_request(member.token, b"", path=path, method="GET"))) == 404
    # Garbage with the token is refused and changes nothing.
    assert status_of(raw(member.bind_port, bind_request(member.token, b"{not json"))) == 400
    assert status_of(raw(member.bind_port, bind_request(member.token, b'{"env": {"A": 1}}'))) == 400
    assert status_of(raw(member.bind_port, b"POST /bind HTTP/1.1\r\nAuthorization: Bearer " + member.token.encode()
                         + b"\r\nContent-Length: 99999999\r\n\r\n")) == 413
    assert not listening(member.agent_port)
    assert member.process.poll() is None

    assert status_of(raw(member.bind_port, bind_request(member.token, body))) == 200
    env_file = member.work / "env.json"
    seen = wait(lambda: env_file.exists() and json.loads(env_file.read_text()), "the agent's environment")
    assert seen["OWNER_SECRET"] == "s3cr3t"
    assert seen["AGENTPROXY_AGENT_ID"] == "a1"
    assert not any(member.token in v for v in seen.values())  # the token never reaches the agent
    # Bound once: the listener is gone, a second binding cannot even connect.
    wait(lambda: not listening(member.bind_port), "the listener to close")


def test_a_token_from_the_environment_is_not_passed_on(launch):
    member = launch(ENV_PROGRAM, token_in_env=True)
    wait(lambda: listening(member.bind_port), "the binding listener")
    assert status_of(raw(member.bind_port, bind_request(member.token, b'{"env": {"X": "1"}}'))) == 200
    env_file = member.work / "env.json"
    seen = wait(lambda: env_file.exists() and json.loads(env_file.read_text()), "the agent's environment")
    assert TOKEN_VARIABLE not in seen
    assert seen["X"] == "1"


def test_sigterm_while_waiting_ends_the_member_at_once(launch):
    member = launch(ENV_PROGRAM)
    wait(lambda: listening(member.bind_port), "the binding listener")
    member.process.send_signal(signal.SIGUSR1)  # a save before anything runs: nothing to do, it keeps waiting
    time.sleep(0.5)
    assert member.process.poll() is None and listening(member.bind_port)
    member.process.send_signal(signal.SIGTERM)
    assert member.process.wait(timeout=30) == 0
    assert not (member.work / "env.json").exists()


def test_a_claimed_members_container_that_starts_again_starts_bound_at_once(launch):
    """k8s mode: after its claim, a member's ConfigMap holds its binding and the word that it is
    bound; a container that restarts then starts with them, as a cold agent does."""
    member = launch(ENV_PROGRAM, extra_env={BOUND_VARIABLE: "1", "OWNER_VALUE": "v1"})
    env_file = member.work / "env.json"
    seen = wait(lambda: env_file.exists() and json.loads(env_file.read_text()), "the agent's environment")
    assert seen["OWNER_VALUE"] == "v1"
    assert not listening(member.bind_port)  # no binding is waited for


def test_a_member_whose_token_is_taken_away_stops_waiting(launch, tmp_path):
    """k8s mode: the token's Secret is deleted after the claim; a member that was never reached
    by its binding must not wait for ever (its container starts again, bound)."""
    member = launch(ENV_PROGRAM, name="gone")
    wait(lambda: listening(member.bind_port), "the binding listener")
    time.sleep(1.5)
    assert member.process.poll() is None  # the token is there: it waits
    (tmp_path / "gone.token").unlink()
    assert member.process.wait(timeout=30) == 1
    assert not (member.work / "env.json").exists()  # nothing ran


def test_the_startup_probe_of_a_member_passes_while_it_waits(launch):
    member = launch(ENV_PROGRAM)
    wait(lambda: listening(member.bind_port), "the binding listener")
    probe = [sys.executable, "-m", "agentproxy.restore", "--port", str(member.agent_port), "--state-file",
             state_file(str(member.work)), "--timeout", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([*probe, "--waiting-port", str(member.bind_port)], env=env, capture_output=True,
                          timeout=60).returncode == 0
    # Without the member's port, agentapi does not answer yet: not started.
    assert subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode == 1
    member.process.send_signal(signal.SIGTERM)
    member.process.wait(timeout=30)
    assert subprocess.run([*probe, "--waiting-port", str(member.bind_port)], env=env, capture_output=True,
                          timeout=60).returncode == 1


def conversation(port: int) -> list[str]:
    body = answers(port, "/messages")
    return [m["content"].strip() for m in body["messages"]] if body else []


def saved(work: Path) -> str:
    try:
        return Path(state_file(str(work))).read_text()
    except FileNotFoundError:
        return ""


def test_a_bound_echo_agent_answers_its_first_message_and_a_kill_loses_nothing(launch):
    member = launch(ECHO, save_interval=0.5)
    wait(lambda: listening(member.bind_port), "the binding listener")
    body = json.dumps({"env": {"AGENTAPI_INITIAL_PROMPT": "hello from the owner"}}).encode()
    assert status_of(raw(member.bind_port, bind_request(member.token, body))) == 200
    wait(lambda: "echo: hello from the owner" in conversation(member.agent_port), "the first answer")
    # Saved without any signal from outside: the launcher followed agentapi's events.
    wait(lambda: "echo: hello from the owner" in saved(member.work), "the conversation saved")

    # Another message, then agentapi dies without warning: it is on disk all the same.
    send(member.agent_port, "second")
    wait(lambda: "echo: second" in saved(member.work), "the second answer saved")
    agentapi = next(p for p in member.family() if p.pid != member.process.pid and "server" in p.cmdline())
    agentapi.kill()
    assert member.process.wait(timeout=30) == 128 + signal.SIGKILL
    assert "echo: second" in saved(member.work)


def send(port: int, text: str) -> None:
    wait(lambda: (answers(port, "/status") or {}).get("status") == "stable", "a stable agent")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/message", body=json.dumps({"content": text, "type": "user"}),
                 headers={"Host": "localhost", "Content-Type": "application/json"})
    assert conn.getresponse().status == 200
    conn.close()
    wait(lambda: f"echo: {text}" in conversation(port), f"the answer to {text!r}")


def health(port: int) -> str | None:
    return (answers(port, "/healthz") or {}).get("state")


def test_a_prestarted_member_runs_before_its_claim_and_the_binding_brings_its_first_message(launch):
    member = launch(ECHO, save_interval=0.5, prestart=True)
    # agentapi and the agent run before any binding; the member says it waits only once its
    # agent is stable (a claim then finds it ready), "starting" before.
    assert wait(lambda: answers(member.agent_port, "/status"), "agentapi before the claim")
    states: set[str | None] = set()

    def seen_waiting() -> bool:
        states.add(health(member.bind_port))
        return "waiting" in states
    wait(seen_waiting, "the member to wait", timeout=60)
    assert (answers(member.agent_port, "/status") or {}).get("status") == "stable"
    assert states <= {"starting", "waiting", None}

    # The binding's first message goes to the running agent: no new process.
    pids = {p.pid for p in member.family()}
    assert status_of(raw(member.bind_port, bind_request("not-the-token", b'{"env": {}}'))) == 401
    body = json.dumps({"env": {"AGENTAPI_INITIAL_PROMPT": "hello early bird", "OWNER": "v"}}).encode()
    assert status_of(raw(member.bind_port, bind_request(member.token, body))) == 200
    wait(lambda: "echo: hello early bird" in conversation(member.agent_port), "the first answer")
    assert {p.pid for p in member.family()} == pids
    assert conversation(member.agent_port).count("hello early bird") == 1
    wait(lambda: not listening(member.bind_port), "the listener to close once bound")
    wait(lambda: "echo: hello early bird" in saved(member.work), "the conversation saved")


def test_a_prestarted_member_that_starts_again_after_its_claim_does_not_repeat_its_first_message(launch):
    """k8s mode: the claimed member's container starts again with its binding in its variables,
    the first message among them; it is in the saved conversation already, so it is not sent again."""
    member = launch(ECHO, save_interval=0.5, prestart=True, name="first")
    wait(lambda: health(member.bind_port) == "waiting", "the member to wait", timeout=60)
    body = json.dumps({"env": {"AGENTAPI_INITIAL_PROMPT": "only once"}}).encode()
    assert status_of(raw(member.bind_port, bind_request(member.token, body))) == 200
    wait(lambda: "echo: only once" in saved(member.work), "the conversation saved")
    member.process.send_signal(signal.SIGTERM)
    member.process.wait(timeout=30)

    again = launch(ECHO, save_interval=0.5, prestart=True, name="again",
                   extra_env={BOUND_VARIABLE: "1", "AGENTAPI_INITIAL_PROMPT": "only once"})
    Path(state_file(str(again.work))).parent.mkdir(parents=True, exist_ok=True)
    Path(state_file(str(again.work))).write_text(saved(member.work))
    wait(lambda: "echo: only once" in conversation(again.agent_port), "the conversation back")
    time.sleep(3)  # agentapi would have sent an initial prompt by now (stable for 2 s)
    assert conversation(again.agent_port).count("only once") == 1


def test_a_prestarted_member_bound_before_its_message_was_saved_sends_it_at_its_next_start(launch):
    again = launch(ECHO, save_interval=0.5, prestart=True, name="unsaved",
                   extra_env={BOUND_VARIABLE: "1", "AGENTAPI_INITIAL_PROMPT": "not lost"})
    wait(lambda: "echo: not lost" in conversation(again.agent_port), "the first message sent at start")
    assert not listening(again.bind_port)
    time.sleep(3)
    assert conversation(again.agent_port).count("not lost") == 1


def test_a_prestarted_claude_member_takes_its_key_with_its_binding(launch, claude, tmp_path):
    """Claude Code runs before its claim without a key; its home's ``apiKeyHelper`` prints a
    file the binding writes. The model stand-in takes only that key (401 otherwise, as the
    real API answers): the first message is answered with it, and the key is nowhere on the
    agent's volume nor in its program's environment. (The model is out of reach: its stand-in.)"""
    key = "sk-ant-late-" + secrets.token_hex(16)

    key_dirs_before = set(Path(tempfile.gettempdir()).glob("agentproxy-key-*"))

    async def scenario() -> None:
        async with ModelStandIn(key=key) as model:
            member = launch([claude], prestart=True, claude_home=True, agent_type="claude", name="claude",
                            extra_env={"ANTHROPIC_BASE_URL": model.url, **QUIET_ENV})
            await asyncio.to_thread(wait, lambda: health(member.bind_port) == "waiting",
                                    "Claude Code to be stable before its claim", 120)
            assert not model.requests  # nothing asked the model yet
            body = json.dumps({"env": {"AGENTAPI_INITIAL_PROMPT": "hello late key", "ANTHROPIC_API_KEY": key}})
            assert status_of(raw(member.bind_port, bind_request(member.token, body.encode()))) == 200
            await asyncio.to_thread(wait, lambda: any(ANSWER_PREFIX + "hello late key" in text
                                                      for text in conversation(member.agent_port)),
                                    "the answer with the late key", 120)
            # Its helper waited for the key: no request went out without it.
            assert model.requests and all(r.headers.get("x-api-key") == key for r in model.requests)
            claude_process = next(p for p in member.family() if "claude" in " ".join(p.cmdline()))
            assert key not in json.dumps(claude_process.environ())
            assert not [p for p in member.work.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
            [key_dir] = set(Path(tempfile.gettempdir()).glob("agentproxy-key-*")) - key_dirs_before
            assert (key_dir / "api-key").read_text() == key and (key_dir.stat().st_mode & 0o077) == 0
            member.process.send_signal(signal.SIGTERM)
            member.process.wait(timeout=60)
            assert not key_dir.exists()  # the key went with the agent

    asyncio.run(scenario())


def test_a_prestarted_member_whose_token_is_taken_away_ends_its_agent(launch, tmp_path):
    """Claimed but never reached by its binding (k8s mode deletes the token after a claim): the
    running agent ends, so that its container starts again, bound from its environment."""
    member = launch(ECHO, prestart=True, name="orphan")
    wait(lambda: health(member.bind_port) == "waiting", "the member to wait", timeout=60)
    agentapi = [p for p in member.family() if p.pid != member.process.pid]
    assert agentapi
    (tmp_path / "orphan.token").unlink()
    member.process.wait(timeout=30)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in agentapi)


def test_the_startup_probe_of_a_prestarted_member_waits_for_its_agent(launch):
    member = launch(ECHO, prestart=True, name="probe")
    probe = [sys.executable, "-m", "agentproxy.restore", "--port", str(member.agent_port), "--state-file",
             state_file(str(member.work)), "--timeout", "2", "--waiting-port", str(member.bind_port)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    wait(lambda: health(member.bind_port), "the listener")
    results = []
    while health(member.bind_port) == "starting":
        code = subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode
        if health(member.bind_port) == "starting":  # starting from before the probe to after it
            results.append(code)
    wait(lambda: health(member.bind_port) == "waiting", "the member to wait")
    assert subprocess.run(probe, env=env, capture_output=True, timeout=60).returncode == 0
    assert results and set(results) == {1}, results  # its agent not stable yet: not started


def test_a_cold_launcher_forwards_sigterm_and_exits_with_agentapi(launch):
    agent = launch(ECHO, warm=False, save_interval=0.0)  # no saves of its own: only agentapi's on SIGTERM
    wait(lambda: answers(agent.agent_port, "/status"), "agentapi")
    send(agent.agent_port, "kept")
    assert "echo: kept" not in saved(agent.work)
    agent.process.send_signal(signal.SIGTERM)
    code = agent.process.wait(timeout=30)  # the launcher itself ignores SIGTERM: agentapi ended
    assert code in (0, 1)  # agentapi's own exit after a graceful shutdown
    assert "echo: kept" in saved(agent.work)  # agentapi saves its state on SIGTERM: it was forwarded


def test_parsing_of_bindings_and_tokens():
    assert parse_binding(b'{"env": {"A": "1"}}') == {"A": "1"}
    assert parse_binding(b"{}") == {}
    for bad in (b"[]", b'{"env": []}', b'{"env": {"1A": "x"}}', b'{"env": {"A": "\\u0000"}}', b'{"other": 1}',
                b'{"env": {"A": "\\ud800"}}', b"\xff"):
        with pytest.raises(BindingError):
            parse_binding(bad)
    assert token_matches("Bearer abc", "abc")
    assert not token_matches("Bearer abd", "abc")
    assert not token_matches("Bearer ", "")
    assert not token_matches(None, "abc")
    assert agentapi_port(["agentapi", "server", "--port", "3284", "--", "x", "--port", "1"]) == 3284
    assert agentapi_port(["agentapi", "server", "--port=9", "--"]) == 9
    assert agentapi_port(["agentapi", "server", "--", "x", "--port", "1"]) is None


def test_no_save_is_asked_before_the_saved_conversation_is_back(tmp_path):
    """A save before agentapi has loaded its state file would overwrite the file with the bare
    startup screen: a change seen meanwhile waits, and is saved once the state is back."""
    count = tmp_path / "saves"
    child = subprocess.Popen([sys.executable, "-c", (
        "import pathlib, signal, time\n"
        f"path = pathlib.Path({str(count)!r})\n"
        "signal.signal(signal.SIGUSR1, lambda *_: path.write_text(str(int(path.read_text() or 0) + 1)))\n"
        "path.write_text('0')\n"
        "while True: time.sleep(0.05)\n")])
    back = False
    saver = Saver(child, 0.1, restored=lambda: back)
    thread = threading.Thread(target=saver.run, daemon=True)
    try:
        deadline = time.monotonic() + 60
        while not (count.exists() and count.read_text() == "0"):
            assert time.monotonic() < deadline, "the child never started"
            time.sleep(0.05)
        thread.start()
        saver.changed()
        time.sleep(1.5)  # long enough for several rounds of the saver
        assert saver.saves == 0 and count.read_text() == "0"
        back = True
        while saver.saves == 0:
            assert time.monotonic() < deadline, "the pending change was never saved"
            time.sleep(0.05)
        while count.read_text() != "1":
            assert time.monotonic() < deadline, "the child never got its SIGUSR1"
            time.sleep(0.05)
    finally:
        saver.stop()
        child.kill()
        child.wait()


def test_the_state_file_is_read_from_the_agentapi_command():
    assert agentapi_state_file(["agentapi", "server", "--state-file", "/d/s.json", "--", "x"]) == "/d/s.json"
    assert agentapi_state_file(["agentapi", "server", "--state-file=/d/s.json"]) == "/d/s.json"
    assert agentapi_state_file(["agentapi", "server", "--port", "1"]) is None


ORPHANS_THEN_COUNT_ZOMBIES = """
import pathlib, subprocess, sys, time
for _ in range(3):  # each shell ends at once and leaves its sleep to PID 1
    subprocess.run(["sh", "-c", "sleep 0.3 &"], check=True)
time.sleep(3)  # the sleeps have ended by now
zombies = [p.name for p in pathlib.Path("/proc").iterdir() if p.name.isdigit()
           and (p / "stat").read_text().rpartition(")")[2].split()[0] == "Z"]
pathlib.Path(sys.argv[1]).write_text(str(len(zombies)))
sys.exit(7)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a PID namespace needs root")
@pytest.mark.parametrize("pid1", ["launcher", "plain"])
def test_as_pid_1_the_launcher_reaps_orphans_and_keeps_the_agents_status(tmp_path, pid1):
    """In a PID namespace of its own (as in a container) orphans become the launcher's
    children. The plain control (a Python parent that only waits for its own child) shows
    that they do stay zombies when nobody reaps them."""
    count = tmp_path / "zombies"
    agent = [sys.executable, "-c", ORPHANS_THEN_COUNT_ZOMBIES, str(count)]
    first = ([sys.executable, "-m", "agentproxy.launcher", "--"] if pid1 == "launcher" else
             [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"])
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", *first, *agent],
                          cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 7, done.stderr.decode()
    assert count.read_text() == ("0" if pid1 == "launcher" else "3")
