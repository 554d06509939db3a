"""A real ``agentproxy serve`` (local mode, the real agentapi) meeting faults: malformed
HTTP from clients, a work directory that cannot be made, a full port range, a full disk
when the state file is written, and an agentapi that exits at once. Each is one clear
line in the log or a clear status or JSON error, and the agents already running keep
running."""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import yaml

from testenv.ports import free_block

from ..live_server import LiveServer, running_server


def answer(live: LiveServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, decoded JSON) of one request, errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(live.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def raw(live: LiveServer, data: bytes) -> bytes:
    """Send ``data`` as is and return what comes back before the server closes."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def ready_pid(live: LiveServer, agent_id: str) -> int:
    return live.wait_for(lambda agents: next((a["details"]["pid"] for a in agents
                                             if a["id"] == agent_id and a["status"] == "ready"), None),
                         what=f"{agent_id} to be ready")


def test_malformed_requests_are_refused_with_one_warning_line_each(tmp_path):
    with running_server(tmp_path) as live:
        requests = [b"GET /agents HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
                    b"GARBAGE\x01 / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"POST /sessions/s/agents HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]
        for data in requests:
            assert raw(live, data)[:13] in (b"HTTP/1.0 400 ", b"HTTP/1.1 400 "), data
        assert answer(live, "GET", "/agents")[0] == 200  # the server is none the worse
        log = live.log()
    assert "Traceback" not in log and " ERROR " not in log, log
    warnings = [line for line in log.splitlines() if "malformed request from 127.0.0.1 refused" in line]
    # A request line that is no HTTP at all (a scanner, TLS to a plain port) aiohttp itself
    # logs only at DEBUG; the other two are one WARNING line each.
    assert len(warnings) == 2 and all(" WARNING " in w for w in warnings), log
    assert "Invalid header value char" in warnings[0] and "chunk size" in warnings[1]


def _replace_when_free(link: Path, target: str, timeout: float = 30.0) -> None:
    """Make ``link`` a symlink to ``target`` once the path is free: the proxy's own write of its
    state (its monitor saves it now and then) holds the temporary file for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            link.symlink_to(target)
            return
        except FileExistsError:
            assert time.monotonic() < deadline, f"{link} stayed in the way"
            time.sleep(0.01)


def test_local_failures_are_clear_errors_and_leave_the_other_agents_running(tmp_path):
    first, _ = free_block(2)
    with socket.socket() as squatter:
        with running_server(tmp_path, settings={"local_mode": {"ports": {"start": first, "end": first + 1}}}) as live:
            assert answer(live, "POST", "/sessions/s/agents", {"id": "steady"})[0] == 201
            pid = ready_pid(live, "steady")

            # A work directory that cannot be made (a file is in the way).
            (live.data_dir / "work" / "blocked").write_text("not a directory")
            status, body = answer(live, "POST", "/sessions/s/agents", {"id": "blocked"})
            assert status == 503 and "cannot create the work directory" in body["error"]["message"], body
            assert str(live.data_dir / "work" / "blocked") in body["error"]["message"]

            # A full disk when the state file is written: the kernel's /dev/full answers ENOSPC to
            # every write, in place of the temporary file the state is first written to.
            tmp = live.data_dir / f".state.json.{live.proc.pid}.tmp"
            _replace_when_free(tmp, "/dev/full")
            status, body = answer(live, "POST", "/sessions/s/agents", {"id": "nospace"})
            assert status == 503, body
            assert body["error"]["message"] == (f"agent 'nospace' was not created: cannot write the state file "
                                                f"{live.data_dir / 'state.json'}: No space left on device")
            assert answer(live, "GET", "/sessions/s/agents/nospace")[0] == 404

            # A full port range: the second port is held by another program.
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", first + 1))
            squatter.listen()
            status, body = answer(live, "POST", "/sessions/s/agents", {"id": "crowded"})
            assert status == 503 and "no free port in local_mode.ports" in body["error"]["message"], body

            assert ready_pid(live, "steady") == pid
            assert [a["id"] for a in live.agents()] == ["steady"]
            assert "Traceback" not in live.log()


def test_an_agentapi_that_exits_at_once_fails_its_agent_and_no_other(tmp_path):
    broken = tmp_path / "broken-agentapi"
    broken.write_text("#!/bin/sh\necho 'agentapi: this build is broken' >&2\nexit 3\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    live = LiveServer(tmp_path).start()
    try:
        assert answer(live, "POST", "/sessions/s/agents", {"id": "steady"})[0] == 201
        pid = ready_pid(live, "steady")
        # The server is stopped (its agents keep running) and started again with an agentapi
        # that exits at once, as after an upgrade gone wrong.
        live.proc.send_signal(signal.SIGTERM)
        live.proc.wait(timeout=30)
        config = yaml.safe_load(live.config_path.read_text())
        config["local_mode"].update(agentapi_binary=str(broken), supervision={
            "backoff_initial": "100ms", "backoff_max": "200ms", "crash_loop_failures": 3})
        live.config_path.write_text(yaml.safe_dump(config))
        live.start()
        assert ready_pid(live, "steady") == pid  # re-adopted, still running
        assert answer(live, "POST", "/sessions/s/agents", {"id": "broken"})[0] == 201
        agent = live.wait_for(lambda agents: next((a for a in agents if a["id"] == "broken"
                                                   and a["status"] == "failed"), None), what="broken to fail")
        assert agent["reason"] == "CrashLoopBackOff", agent
        assert "this build is broken" in agent["message"] and "exit" in agent["message"], agent
        assert ready_pid(live, "steady") == pid and psutil.pid_exists(pid)
    finally:
        live.stop()
