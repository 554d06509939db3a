"""The two servers these tests compare, each a real process on 127.0.0.1:

- ``agentproxy serve`` in local mode with the agentapi-proxy layer on;
- the Go agentapi-proxy v1.73.0 (``testenv/agentapi_proxy.py`` builds it into the cache),
  its server bound to loopback, with a ``HOME`` and working directory of its own.

Both run the real agentapi around the same ``claude``: a script that starts the echo
demo agent. The peer runs ``agentapi server --port N -- claude`` from its ``PATH`` (and
``claude config set ...`` before, which the demo answers by ending at once); agentproxy
is configured so that its agent type ``claude`` is that script. Every port (the servers',
agentproxy's agents', the peer's sessions') comes from :mod:`testenv.ports`.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from agentproxy.agentapi import locate
from testenv.agentapi_proxy import ensure as ensure_peer
from testenv.ports import free_block, free_port
from tests.unit.local.support import AGENT_NICE, processes_in

PEER_SESSION_PORTS = 100
"""Ports the peer may give its sessions (it counts up from its ``start_port``)."""
STARTUP_LIMIT = 60.0
"""Seconds a server may take to answer ``/health`` (a bound, not a measurement)."""
STOP_LIMIT = 30.0


def agent_programs(directory: Path) -> Path:
    """A directory with ``agentapi`` (the real one) and ``claude`` (the echo demo agent)."""
    agentapi = locate()
    if agentapi is None:
        raise RuntimeError("agentapi is not installed: run `agentproxy install-agentapi` (`just agentapi`)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "agentapi").symlink_to(agentapi)
    claude = directory / "claude"
    # Every argument is ignored: the demo is what answers, whatever the caller asks of "claude".
    claude.write_text(f'#!/bin/sh\nexec {sys.executable} -m agentproxy.demo_agent "$@"\n')
    claude.chmod(0o755)
    return directory


@dataclass
class Server:
    """A running server: its base URL, process and the directory it works in."""

    name: str
    url: str
    process: subprocess.Popen
    directory: Path
    log: Path
    keys: dict[str, str] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.output()}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} did not answer /health:\n{server.output()}")
        time.sleep(0.1)


def start_agentproxy(directory: Path, programs: Path, agent_ports: tuple[int, int],
                     api_keys: list[dict[str, Any]] | None = None) -> Server:
    """``agentproxy serve`` in local mode with the layer on; agents of type ``claude`` by default."""
    directory.mkdir(parents=True)
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "api_keys": api_keys or []},
        "agents": {"commands": {"claude": [str(programs / "claude")]}},
        "local_mode": {"agentapi_binary": str(programs / "agentapi"), "data_dir": str(directory / "data"),
                       "ports": {"start": agent_ports[0], "end": agent_ports[1]}, "agent_nice": AGENT_NICE},
        "compat": {"agentapi_proxy": {"enabled": True, "agent_type": "claude"}},
    }
    config_file = directory / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    # Settings come from the file alone: AGENTAPI_* variables of the caller would override it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
    log = directory / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "agentproxy", "serve", "--config", str(config_file)],
                                   env=env, cwd=directory, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    server = Server("agentproxy", f"http://127.0.0.1:{port}", process, directory, log)
    try:
        _wait_healthy(server)
    except BaseException:
        stop_agentproxy(server)
        raise
    return server


def stop_agentproxy(server: Server) -> None:
    """Delete every agent (agents outlive ``serve`` by design), then stop the server."""
    if server.process.poll() is None:
        admin = {"Authorization": f"Bearer {server.keys['admin']}"} if "admin" in server.keys else {}
        try:
            listing = _call(f"{server.url}/agents", headers=admin)
            for agent in listing["agents"]:
                _call(f"{server.url}/sessions/{agent['session']}/agents/{agent['id']}?purge=true", "DELETE",
                      headers=admin)
        finally:
            _stop(server.process)
            _end_leftovers(server)
    else:
        _end_leftovers(server)


def start_peer(directory: Path, programs: Path) -> Server:
    """The Go agentapi-proxy on loopback, auth off, its sessions on a block of free ports."""
    binaries = ensure_peer()
    directory.mkdir(parents=True)
    (directory / "home").mkdir()
    config = directory / "config.json"
    start_port, _ = free_block(PEER_SESSION_PORTS)
    config.write_text(json.dumps({"start_port": start_port, "auth": {"enabled": False}}))
    port = free_port()
    # A clean environment: the peer reads AGENTAPI_* into its settings and passes its
    # environment on to agentapi, whose flags are AGENTAPI_* variables too.
    env = {"PATH": f"{programs}:/usr/local/bin:/usr/bin:/bin", "HOME": str(directory / "home"), "LANG": "C.UTF-8"}
    log = directory / "peer.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(binaries / "agentapi-proxy-loopback"), "--listen", f"127.0.0.1:{port}",
                                    "--config", str(config)], env=env, cwd=directory, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    server = Server("agentapi-proxy", f"http://127.0.0.1:{port}", process, directory, log)
    try:
        _wait_healthy(server)
    except BaseException:
        stop_peer(server)
        raise
    return server


def stop_peer(server: Server) -> None:
    """SIGTERM: the peer ends every session's process group, then itself."""
    _stop(server.process)
    _end_leftovers(server)


def peer_client(server: Server, session_id: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``agentapi-proxy client -e URL -s ID ARGS...``: the peer's own CLI, built from its source."""
    return subprocess.run([str(ensure_peer() / "agentapi-proxy"), "client", "-e", server.url, "-s", session_id,
                           *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def peer_client_events(server: Server, session_id: str, lines: int, timeout: float = 30.0) -> str:
    """The output of ``client events`` once it printed ``lines`` events (it runs until interrupted)."""
    process = subprocess.Popen([str(ensure_peer() / "agentapi-proxy"), "client", "-e", server.url,
                                "-s", session_id, "events"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while out.count(b"[EVENT]") < lines or not out.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([process.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        process.send_signal(signal.SIGINT)  # what a user's Ctrl+C sends
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
    return out.decode(errors="replace")


def _call(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read() or b"null")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _end_leftovers(server: Server) -> None:
    """Every process still working in the server's directory is a test failure; end it (by pid) and say so."""
    deadline = time.monotonic() + 10
    while (left := processes_in(server.directory)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if left:
        raise AssertionError(f"{server.name} left processes running: {[p.pid for p in left]}")


