"""The local backend's benchmark runs and reports its table (a tiny run, so the suite stays fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "local.py"


def test_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--agents", "3", "--samples", "2", "--idle", "0.5"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for line in ("supervision overhead (p50 - p50)", "3 agents started at once", "proxy RSS growth per agent",
                 "as many started directly", "processes left in the agents' directories after delete: 0"):
        assert line in proc.stdout, proc.stdout
