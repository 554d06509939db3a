"""A real ``agentproxy serve`` in a subprocess: local mode, the real agentapi and the echo
demo agent, on loopback ports of its own and a data directory of its own.

Used by the tests of the client CLI and of the dashboard, which speak to it over
HTTP only. On the way out every agent is deleted through the API, the server gets
SIGTERM, and any agent process still running in the data directory is killed by
its pid, so nothing is left behind even when a test failed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import yaml

from testenv.ports import free_block
from tests.unit.local.support import AGENT_NICE

BLOCK = 20
"""Ports of a server: the first for the server, the others for its agents."""
STARTUP_TIMEOUT = 30.0


def clean_env() -> dict[str, str]:
    """The environment without settings or client variables that could change what is tested."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AGENTAPI_", "AGENTPROXY_URL", "AGENTPROXY_API_KEY"))}


class LiveServer:
    """One running server; ``url`` is its base URL, ``key`` the admin key when keys are on."""

    def __init__(self, directory: Path, api_keys: Iterable[tuple[str, str, bool]] = (),
                 agent_commands: dict[str, list[str]] | None = None, settings: dict[str, Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.env = dict(env or {})
        """Variables the server gets on top of the test's environment (e.g. a model's key)."""
        self.data_dir = directory / "data"
        self.keys = list(api_keys)
        first, last = free_block(BLOCK, mostly=True)  # agents pass over busy ports
        self.port = first
        self.url = f"http://127.0.0.1:{first}"
        self.log_path = directory / "serve.log"
        config: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": first},
            "local_mode": {"data_dir": str(self.data_dir), "ports": {"start": first + 1, "end": last},
                           "agent_nice": AGENT_NICE},
        }
        if agent_commands:
            config["agents"] = {"commands": agent_commands}
        for section, values in (settings or {}).items():  # further settings, by section
            config.setdefault(section, {}).update(values)
        if self.keys:
            config["server"]["api_keys"] = [
                {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "admin": admin}
                for name, key, admin in self.keys]
        self.config_path = directory / "agentproxy.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def key(self) -> str | None:
        return next((key for _, key, admin in self.keys if admin), None)

    def start(self) -> LiveServer:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agentproxy", "serve", "--config", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env={**clean_env(), **self.env}, cwd=self.directory)
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentproxy serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"agentproxy serve did not get ready:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(self, method: str, path: str, body: Any = None, key: str | None = None) -> Any:
        """One API request (the admin key by default); the decoded JSON answer."""
        key = key or self.key
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def agents(self) -> list[dict[str, Any]]:
        return self.call("GET", "/agents")["agents"]

    def wait_for(self, check: Any, timeout: float = 60.0, what: str = "condition") -> Any:
        """Poll the agent list until ``check(agents)`` is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            agents = self.agents()
            value = check(agents)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; agents: {agents}")
            time.sleep(0.2)

    def delete_all(self) -> None:
        for agent in self.agents():
            self.call("DELETE", f"/sessions/{agent['session']}/agents/{agent['id']}?purge=true")

    def stop(self) -> None:
        """Delete every agent, stop the server, and kill whatever of ours is still running."""
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                try:
                    self.delete_all()
                except (urllib.error.URLError, OSError):
                    pass
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        finally:
            self.proc = None
            kill_processes_in(self.data_dir)


@contextmanager
def running_server(directory: Path, **kwargs: Any) -> Iterator[LiveServer]:
    """A started :class:`LiveServer`, stopped (and cleaned up after) on the way out."""
    live = LiveServer(directory, **kwargs)
    try:
        yield live.start()
    finally:
        live.stop()


def kill_processes_in(directory: Path) -> list[int]:
    """Kill (by pid) the processes whose working directory is inside ``directory``: agents a
    failed test may have left. Returns their pids."""
    prefix = str(directory)
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd")
        if cwd and (cwd == prefix or cwd.startswith(prefix + os.sep)):
            found.append(proc)
    for proc in found:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(found, timeout=10)
    return [p.pid for p in found]
