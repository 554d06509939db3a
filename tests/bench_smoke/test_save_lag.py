"""The benchmark of what a SIGKILL inside an agent's container loses runs and reports it."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("save_lag", "--messages", "3", "--burst", "2", "--interval", "1", cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("launcher with --save-interval 1 s, 3 answers"), proc.stdout
    assert re.search(r"p50 \d+ ms, p95 \d+ ms, max \d+ ms", lines[1]), proc.stdout
    assert re.search(r"SIGKILL at once after the last of 2 answers in a row: [0-2] of them lost", lines[2]), proc.stdout
    assert lines[3].endswith("3 of 3 earlier answers back"), proc.stdout
