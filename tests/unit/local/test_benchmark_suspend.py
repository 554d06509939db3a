"""The suspend benchmark runs and reports its figures (a tiny run, so the suite stays fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "suspend.py"


def test_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--agents", "2"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "local: 2 resumes; resume-to-ready p50 " in proc.stdout, proc.stdout
