"""The create-to-first-answer benchmark (Claude Code against echo) runs and reports its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "first_answer.py"


def test_benchmark_smoke(tmp_path, claude):
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--runs", "1"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("create-to-first-answer, local mode, 1 runs each"), proc.stdout
    assert [line.split()[0] for line in lines[2:]] == ["echo", "claude"], proc.stdout
