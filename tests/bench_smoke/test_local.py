"""The local backend's benchmark runs and reports its table (a tiny run, so the suite stays fast)."""

from __future__ import annotations

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("local", "--agents", "3", "--samples", "2", "--idle", "0.5", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for line in ("supervision overhead (p50 - p50)", "3 agents started at once", "proxy RSS growth per agent",
                 "as many started directly", "processes left in the agents' directories after delete: 0"):
        assert line in proc.stdout, proc.stdout
