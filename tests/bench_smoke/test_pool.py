"""The warm pool benchmark runs and reports its table (a tiny run, so the suite stays fast)."""

from __future__ import annotations

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("pool", "--concurrency", "1", "--rounds", "1", "--size", "1", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    for line in ("1 create(s) at once, median of 1 rounds (pool of 1)", "warm claim-to-ready", "cold create-to-ready",
                 "warm claim-to-first-answer", "ratio warm/cold p50", "refill after the burst"):
        assert line in proc.stdout, proc.stdout
