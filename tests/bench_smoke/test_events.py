"""The /events benchmark runs its proxy and readers and reports both rounds (a tiny run, so the
suite stays fast; the figures are not checked, only that every change reached every subscriber)."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("events", "--agents", "20", "--subscribers", "3", "--rate", "50", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "/events: 20 agents, 20 changes at 50/s" in proc.stdout, proc.stdout
    rows = re.findall(r"^- +(\d+) +(\d+) +\d+\.\d+ ", proc.stdout, re.M)
    assert rows == [("1", "20"), ("3", "20")], proc.stdout
    assert "CPU per change, 3 subscribers against 1:" in proc.stdout
