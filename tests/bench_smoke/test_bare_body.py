"""The floor bench-scale measures its lists against: a file's bytes answered at every GET."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time

from .support import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


def test_it_answers_every_get_with_the_files_bytes(tmp_path):
    body = b'{"agents":[' + b",".join(b'{"id":"a%d"}' % i for i in range(1000)) + b"]}"
    (tmp_path / "agents.json").write_bytes(body)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_body", str(tmp_path / "agents.json"), str(port)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = _get(port, "/agents")
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "the bare server did not answer within 30 s"
                time.sleep(0.1)
        assert answer == (200, "application/json", body)
        assert _get(port, "/any/other/path")[2] == body
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_without_its_arguments_it_says_how_to_run_it():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bare_body"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: python -m benchmarks.bare_body FILE PORT")
