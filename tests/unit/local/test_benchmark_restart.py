"""The restart benchmark runs and reports its figures (a tiny run, so the suite stays fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "restart.py"


def test_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--agents", "2"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "restart→healthz s" in lines[0], proc.stdout
    figures = lines[1].split()
    assert figures[0] == "2" and figures[4] == "2/2", proc.stdout  # both re-adopted with their pids
    assert float(figures[5]) > 0, proc.stdout  # the restarted proxy's CPU time until /healthz
