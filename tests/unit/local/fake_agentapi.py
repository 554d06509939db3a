#!/usr/bin/env python3
"""A stand-in for the ``agentapi`` binary, for the local backend's tests.

It exists only because the real agentapi cannot be fetched where these tests run
(the Go module proxy refuses ``github.com/coder/agentapi``); wherever agentapi is
installed, ``test_with_real_agentapi.py`` runs the real thing. It imitates what
the supervisor relies on, nothing more:

- the command line ``server --port P --type T -- CMD...``;
- a stdin that is not a terminal is read to its end before anything starts;
- CMD runs as a child in a session of its own (agentapi gives it a terminal of its
  own), with a stdin pipe that stays open, and stdout/stderr shared with this process;
- ``GET /status`` on 127.0.0.1:P answers ``{"status": "stable", "agent_type": T}``;
  a Host header other than localhost, 127.0.0.1 or [::1] gets 400, as from agentapi;
- ``POST /message`` with ``{"content": ..., "type": "user"}`` types the content as
  agentapi does: ``x``, a backspace, the text in bracketed-paste markers, a carriage return;
- when CMD exits, this exits too: code 1 when CMD failed, 0 otherwise;
- SIGTERM or SIGINT: SIGINT to CMD, SIGKILL after 5 s, then exit 0.

Test hook: ``FAKE_AGENTAPI_LISTEN_DELAY`` (seconds) delays listening, to make an
agentapi that does not answer in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ALLOWED_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
KILL_AFTER = 5.0


def host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def parse(argv: list[str]) -> tuple[int, str, list[str]]:
    if not argv or argv[0] != "server" or "--" not in argv:
        raise SystemExit("usage: fake_agentapi server --port P --type T -- CMD...")
    split = argv.index("--")
    options, command = argv[1:split], argv[split + 1:]
    values = {"--port": "3284", "--type": "custom"}
    i = 0
    while i < len(options):
        name, _, inline = options[i].partition("=")
        if name not in values:
            raise SystemExit(f"unknown option {name}")
        if inline:
            values[name] = inline
            i += 1
        else:
            values[name] = options[i + 1]
            i += 2
    if not command:
        raise SystemExit("no command")
    return int(values["--port"]), values["--type"], command


def main() -> int:
    port, agent_type, command = parse(sys.argv[1:])
    if not os.isatty(0):
        sys.stdin.buffer.read()
    try:
        child = subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        print(f"fake agentapi: cannot run {command[0]}: {exc}", flush=True)
        return 1
    typing_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _host_ok(self) -> bool:
            if host_name(self.headers.get("Host", "")).lower() in ALLOWED_HOSTS:
                return True
            self._answer(400, {"error": "Invalid host header. Allowed hosts: localhost, 127.0.0.1, [::1]"})
            return False

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if not self._host_ok():
                return
            if self.path == "/status":
                self._answer(200, {"status": "stable", "agent_type": agent_type})
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if not self._host_ok():
                return
            if self.path != "/message":
                self._answer(404, {"error": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            keys = "x\x08\x1b[200~" + str(body.get("content", "")) + "\x1b[201~\r"
            with typing_lock:
                assert child.stdin is not None
                child.stdin.write(keys.encode())
                child.stdin.flush()
            self._answer(200, {"ok": True})

        def log_message(self, *args: object) -> None:  # readiness probes would flood the log
            pass

    delay = float(os.environ.get("FAKE_AGENTAPI_LISTEN_DELAY", "0") or 0)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        print(f"fake agentapi: signal {signum}, interrupting the agent", flush=True)
        _signal(child, signal.SIGINT)
        threading.Timer(KILL_AFTER, _signal, (child, signal.SIGKILL)).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def serve() -> None:
        if delay:
            time.sleep(delay)
        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            print(f"fake agentapi: failed to start server: {exc}", flush=True)
            _signal(child, signal.SIGKILL)
            return
        print(f"fake agentapi: listening on 127.0.0.1:{port} (type {agent_type})", flush=True)
        server.serve_forever(poll_interval=0.2)

    threading.Thread(target=serve, daemon=True).start()
    code = child.wait()
    if stopping.is_set() or code == 0:
        return 0
    print(f"fake agentapi: agent exited with code {code}", flush=True)
    return 1


def _signal(child: subprocess.Popen, sig: int) -> None:
    try:
        child.send_signal(sig)
    except ProcessLookupError:
        pass


if __name__ == "__main__":
    # os._exit: the server thread must not keep a finished agentapi alive.
    code = main()
    sys.stdout.flush()
    os._exit(code)
