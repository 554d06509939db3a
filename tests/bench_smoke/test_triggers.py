"""The triggers benchmark runs and reports its figures (a tiny run, so the suite stays fast)."""

from __future__ import annotations

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("triggers", "--agents", "1", "--runs", "1", "--rate", "10", "--seconds", "1", cwd=tmp_path,
                         timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "local run 1: 1 agents; webhook-to-ready p50 " in proc.stdout, proc.stdout
    for kind in ("deleted, from", "failed, from", "ready after work, from", "waiting_input, from"):
        assert f"notifications: {kind}" in proc.stdout, proc.stdout
    assert "load: 10 deliveries" in proc.stdout and "doubled 0" in proc.stdout, proc.stdout
