"""The paths to one agentapi that the proxy benchmark compares, each a real process on 127.0.0.1.

- ``direct``: the agentapi v0.12.1 process itself, wrapping the echo demo agent and started
  with agentproxy's own command line (:func:`agentproxy.launch.agent_launch`);
- ``agentproxy``: :func:`agentproxy.api.serve.run_server` over an in-memory backend whose one
  agent (``bench/a1``) is that agentapi;
- ``chp``: configurable-http-proxy 5.3.0 (JupyterHub's proxy, Node), one route to that agentapi
  (``bin/just chp`` installs it into the user-level cache);
- ``peer``: the Go agentapi-proxy v1.73.0 (its ``pkg/proxy`` served on loopback,
  ``bin/just agentapi-proxy`` builds it), one session;
- two floors, not proxies: ``relay``, the smallest byte relay on uvloop (``benchmarks/relay.py``),
  and ``socat``, a byte relay in C (Debian's ``socat``, ``bin/just socat``; it forks per
  connection, so it has no one process to take CPU or memory figures from).

There is only one agentapi. The Go peer starts ``agentapi`` from its ``PATH`` for each session,
so when the peer runs, its ``PATH`` holds a wrapper that starts *the* agentapi (this module's
``agentapi`` role) on the port the peer chose, and the other paths are pointed at that port.
Without the peer the benchmark starts the same agentapi itself. A path that cannot be started
is kept with the reason, and reported as missing.

Roles run in child processes: ``python benchmarks/paths.py agentapi --work-dir D server --port N ...``
(what the wrapper runs) and ``python benchmarks/paths.py agentproxy --upstream URL --port N [--set KEY=VALUE ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentproxy.agentapi import cache_root, locate
from agentproxy.backends.local.ports import port_is_free

REPO = Path(__file__).resolve().parents[1]

CHP_VERSION = "5.3.0"
PEER_VERSION = "v1.73.0"
START_LIMIT = 60.0
"""Seconds a server may take to answer (a bound, not a measurement)."""
SESSION, AGENT = "bench", "a1"

NAMES = {
    "direct": "direct agentapi",
    "agentproxy": "agentproxy",
    "chp": f"configurable-http-proxy {CHP_VERSION}",
    "peer": f"agentapi-proxy {PEER_VERSION} (Go)",
    "relay": "floor: byte relay, uvloop",
    "socat": "floor: byte relay, socat (C)",
}
ORDER = tuple(NAMES)


@dataclass
class Target:
    """One way to reach the agentapi: the base URL its API answers under, and the process to watch."""

    key: str
    base: str | None = None
    """``GET {base}/status`` is agentapi's ``/status``."""
    pid: int | None = None
    """The process whose memory is measured (the proxy's own, not its children)."""
    missing: str | None = None
    """Why this path could not be started."""


@dataclass
class Paths:
    """The running paths and what they need stopped."""

    paths: dict[str, Target] = field(default_factory=dict)
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    work: tempfile.TemporaryDirectory | None = None
    agentapi_port: int = 0
    loop: str = "auto"
    """agentproxy's event loop (``agentproxy serve --loop``)."""
    agentproxy_settings: tuple[str, ...] = ()
    """``--set`` overrides of agentproxy's settings (e.g. API keys, sign-in)."""
    agentproxy_headers: dict[str, str] = field(default_factory=dict)
    """Headers a request through agentproxy needs (its credentials when it wants one)."""

    def __enter__(self) -> Paths:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every process (newest first: proxies before what they reach)."""
        for _, process in reversed(self.processes):
            _terminate(process)
        self.processes.clear()
        if self.work is not None:
            self.work.cleanup()
            self.work = None


class Ports:
    """Free ports handed out one by one from a range."""

    def __init__(self, first: int, last: int) -> None:
        self.next, self.last = first, last

    def take(self) -> int:
        while self.next <= self.last:
            port, self.next = self.next, self.next + 1
            if port_is_free(port):
                return port
        raise RuntimeError(f"no free port left up to {self.last}")


def start_all(ports: Ports, wanted: tuple[str, ...] = ORDER, loop: str = "auto",
              agentproxy_settings: tuple[str, ...] = (), agentproxy_headers: dict[str, str] | None = None) -> Paths:
    """Start the agentapi and the wanted proxies in front of it (agentproxy on the event loop ``loop``,
    with the settings ``agentproxy_settings``, answering requests that carry ``agentproxy_headers``)."""
    work_dir = tempfile.TemporaryDirectory(prefix="agentproxy-bench-")
    running = Paths(work=work_dir, loop=loop, agentproxy_settings=agentproxy_settings,
                    agentproxy_headers=dict(agentproxy_headers or {}))
    work = Path(work_dir.name)
    try:
        direct = Target("direct")
        if "peer" in wanted:
            running.paths["peer"] = _start_peer(running, work, ports, direct)
        if direct.base is None:  # no peer to start it: start the agentapi here
            _start_agentapi(running, work, ports, direct)
        running.paths["direct"] = direct
        if direct.base is None:
            raise RuntimeError(f"agentapi did not start: {direct.missing}")
        for key, starter in (("agentproxy", _start_agentproxy), ("chp", _start_chp), ("relay", _start_relay),
                             ("socat", _start_socat)):
            if key in wanted:
                path = Target(key)
                try:
                    starter(running, work, ports, direct.base, path)
                except Exception as exc:  # noqa: BLE001 - reported as missing, never skipped
                    path.missing = str(exc) or type(exc).__name__
                running.paths[key] = path
    except BaseException:
        running.stop()
        raise
    return running


def _launch(running: Paths, work: Path, name: str, argv: list[str], **options: Any) -> subprocess.Popen:
    """Start a path's process, its output in ``work/NAME.log``; stopped with the others."""
    with open(work / f"{name}.log", "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **options)
    running.processes.append((name, process))
    return process


# --- the agentapi ------------------------------------------------------------------------------

def agentapi_role(argv: list[str]) -> None:
    """Replace this process with the agentapi of the benchmark, on the port of ``server --port N``."""
    from agentproxy.launch import agent_launch
    from agentproxy.settings import Settings
    from agentproxy.spec import build_spec

    parser = argparse.ArgumentParser(prog="paths.py agentapi")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--agentapi", required=True, help="the agentapi executable")
    known, rest = parser.parse_known_args(argv)
    port = int(rest[rest.index("--port") + 1])  # the rest is what the peer asks for: only the port counts
    binary = known.agentapi
    work = Path(known.work_dir) / "agent"
    work.mkdir(parents=True, exist_ok=True)
    spec = build_spec(Settings(), SESSION, AGENT, "echo")
    launch = agent_launch(spec, port=port, work_dir=str(work), program=binary,
                          command=[sys.executable, "-m", "agentproxy.demo_agent"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAPI_")}
    env.update(launch.env, PYTHONPATH=str(REPO))
    # agentapi logs to stderr; a file keeps it out of whoever started it (the peer holds a
    # child's stderr in memory, which would count in its footprint).
    log = os.open(Path(known.work_dir) / "agentapi.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDWR)
    for fd, target in ((null, 0), (null, 1), (log, 2)):
        os.dup2(fd, target)
    os.chdir(work)
    os.execve(launch.program, list(launch.argv), env)


def _agentapi_binary() -> str:
    binary = locate()
    if binary is None:
        raise RuntimeError("agentapi is not installed: run `bin/just agentapi`")
    return binary


def _start_agentapi(running: Paths, work: Path, ports: Ports, direct: Target) -> None:
    port = ports.take()
    process = subprocess.Popen([sys.executable, __file__, "agentapi", "--work-dir", str(work), "--agentapi",
                                _agentapi_binary(), "server", "--port", str(port)], start_new_session=True,
                               stdin=subprocess.DEVNULL)
    running.processes.append(("agentapi", process))
    base = f"http://127.0.0.1:{port}"
    _wait_answering(f"{base}/status", process)
    direct.base, direct.pid, running.agentapi_port = base, process.pid, port


# --- agentproxy ----------------------------------------------------------------------------------

def agentproxy_role(upstream: str, port: int, loop: str = "auto", overrides: tuple[str, ...] = ()) -> None:
    """Serve agentproxy's API with one ready agent (bench/a1) whose API is ``upstream``, with the
    settings' ``--set`` ``overrides``."""
    import asyncio

    from agentproxy.api import serve
    from agentproxy.settings import Settings, load_settings
    from agentproxy.spec import build_spec
    from tests.unit.api.memory_backend import MemoryBackend

    async def main() -> None:
        settings = load_settings(overrides=overrides, environ={}).settings if overrides else Settings()
        keys = serve.api_keys_from(settings) if overrides else ()  # older versions: no settings, no keys
        backend = MemoryBackend(upstream=upstream)
        await backend.create(build_spec(settings, SESSION, AGENT))
        await serve.run_server(settings, backend, keys, host="127.0.0.1", port=port,
                               on_listening=lambda addresses: print("listening", flush=True))

    # What `agentproxy serve` runs on: uvloop where there is one (older versions: asyncio's loop).
    runner = getattr(serve, "event_loop_runner", None)
    if runner is None:
        asyncio.run(main())
    else:
        with runner(loop) as loop_runner:
            loop_runner.run(main())


def _start_agentproxy(running: Paths, work: Path, ports: Ports, upstream: str, path: Target) -> None:
    port = ports.take()
    overrides = [f"--set={item}" for item in running.agentproxy_settings]
    process = _launch(running, work, "agentproxy", [sys.executable, __file__, "agentproxy", "--upstream", upstream,
                                                    "--port", str(port), "--loop", running.loop, *overrides],
                      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    path.base = f"http://127.0.0.1:{port}/sessions/{SESSION}/agents/{AGENT}/api"
    _wait_answering(f"{path.base}/status", process, work / "agentproxy.log", running.agentproxy_headers)
    path.pid = process.pid


# --- configurable-http-proxy ---------------------------------------------------------------------

def chp_program() -> Path:
    """Where ``bin/just chp`` installs configurable-http-proxy."""
    return cache_root() / f"configurable-http-proxy-{CHP_VERSION}" / "node_modules" / ".bin" / "configurable-http-proxy"


def _start_chp(running: Paths, work: Path, ports: Ports, upstream: str, path: Target) -> None:
    program = chp_program()
    if not program.exists():
        raise RuntimeError(f"not installed (run `bin/just chp`): {program.name} {CHP_VERSION}")
    port, api_port = ports.take(), ports.take()
    token = secrets.token_hex(16)
    # --no-include-prefix: the route's prefix is stripped, as agentapi serves its API at /.
    process = _launch(running, work, "chp", [str(program), "--ip", "127.0.0.1", "--port", str(port), "--api-ip",
                                             "127.0.0.1", "--api-port", str(api_port), "--no-include-prefix",
                                             "--log-level", "error"],
                      env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token})
    api = f"http://127.0.0.1:{api_port}/api/routes"
    _wait_answering(api, process, work / "chp.log", {"Authorization": f"token {token}"})
    request = urllib.request.Request(f"{api}/{AGENT}", data=json.dumps({"target": upstream}).encode(),
                                     method="POST", headers={"Authorization": f"token {token}",
                                                             "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
    path.base = f"http://127.0.0.1:{port}/{AGENT}"
    _wait_answering(f"{path.base}/status", process, work / "chp.log")
    path.pid = process.pid


# --- the floors: byte relays ------------------------------------------------------------------

def _start_relay(running: Paths, work: Path, ports: Ports, upstream: str, path: Target) -> None:
    port = ports.take()
    process = _launch(running, work, "relay", [sys.executable, str(Path(__file__).with_name("relay.py")),
                                               "--listen", str(port), "--upstream", str(running.agentapi_port)])
    path.base = f"http://127.0.0.1:{port}"
    _wait_answering(f"{path.base}/status", process, work / "relay.log")
    path.pid = process.pid


def _start_socat(running: Paths, work: Path, ports: Ports, upstream: str, path: Target) -> None:
    program = shutil.which("socat")
    if program is None:
        raise RuntimeError("not installed (run `bin/just socat`)")
    port = ports.take()
    process = _launch(running, work, "socat", [program, f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay",
                                               f"TCP:127.0.0.1:{running.agentapi_port},nodelay"])
    path.base = f"http://127.0.0.1:{port}"
    _wait_answering(f"{path.base}/status", process, work / "socat.log")
    # No pid: the work is done by a child per connection, not by this process.


# --- the Go agentapi-proxy ---------------------------------------------------------------------

def _start_peer(running: Paths, work: Path, ports: Ports, direct: Target) -> Target:
    path = Target("peer")
    from testenv.agentapi_proxy import entry

    program = entry() / "agentapi-proxy-loopback"
    if not program.exists():
        path.missing = f"not built (run `bin/just agentapi-proxy`): {program.name} {PEER_VERSION}"
        return path
    home, programs = work / "peer-home", work / "peer-bin"
    home.mkdir()
    programs.mkdir()
    wrapper = programs / "agentapi"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" agentapi '
                       f'--work-dir "{work}" --agentapi "{_agentapi_binary()}" "$@"\n')
    claude = programs / "claude"  # the peer runs `claude ...` to configure it; nothing to configure here
    claude.write_text("#!/bin/sh\nexit 0\n")
    for script in (wrapper, claude):
        script.chmod(0o755)
    port, agent_port = ports.take(), ports.take()
    (work / "peer.json").write_text(json.dumps({"start_port": agent_port, "auth": {"enabled": False}}))
    # A clean environment: the peer reads AGENTAPI_* into its settings and passes its environment on.
    env = {"PATH": f"{programs}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    process = _launch(running, work, "peer", [str(program), "--listen", f"127.0.0.1:{port}", "--config",
                                              str(work / "peer.json")], env=env, cwd=work)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_answering(f"{base}/health", process, work / "peer.log")
        request = urllib.request.Request(f"{base}/start", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            session = json.loads(answer.read())["session_id"]
        # The peer took the first free port from agent_port; the wrapper started agentapi there.
        found = _wait_agentapi(range(agent_port, agent_port + 20), process, work)
    except Exception as exc:  # noqa: BLE001 - reported as missing, never skipped
        path.missing = str(exc) or type(exc).__name__
        return path
    direct.base, running.agentapi_port = f"http://127.0.0.1:{found}", found
    direct.pid = _agentapi_pid(process.pid)
    path.base, path.pid = f"{base}/{session}", process.pid
    _wait_answering(f"{path.base}/status", process, work / "peer.log")
    return path


def _wait_agentapi(candidates: range, process: subprocess.Popen, work: Path) -> int:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {_tail(work / 'peer.log')}")
        for port in candidates:
            if not port_is_free(port) and _answers(f"http://127.0.0.1:{port}/status"):
                return port
        time.sleep(0.1)
    raise RuntimeError(f"its session's agentapi did not answer: {_tail(work / 'agentapi.log')}")


def _agentapi_pid(parent: int) -> int | None:
    import psutil

    for child in psutil.Process(parent).children(recursive=True):
        if os.path.basename(child.exe() or "") == "agentapi" or child.name() == "agentapi":
            return child.pid
    return None


# --- helpers ---------------------------------------------------------------------------------------

def _answers(url: str, headers: dict[str, str] | None = None) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as answer:
            answer.read()
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _wait_answering(url: str, process: subprocess.Popen, log: Path | None = None,
                    headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + START_LIMIT
    while not _answers(url, headers):
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}: {_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {START_LIMIT:g} s: {_tail(log)}")
        time.sleep(0.05)


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM (agentapi ends its agent, the peer its sessions), SIGKILL after a while; then
    whatever the process started that is still there, by pid."""
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.Error:
        children = []
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


def main(argv: list[str]) -> None:
    if argv and argv[0] == "agentapi":
        return agentapi_role(argv[1:])
    parser = argparse.ArgumentParser(description="A role of the proxy benchmark (run by benchmarks/proxy.py).")
    parser.add_argument("role", choices=["agentproxy"])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--set", action="append", default=[], help="a settings override, KEY=VALUE")
    args = parser.parse_args(argv)
    agentproxy_role(args.upstream, args.port, args.loop, tuple(args.set))


if __name__ == "__main__":
    main(sys.argv[1:])
