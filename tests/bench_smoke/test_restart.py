"""The restart benchmark runs and reports its figures (a tiny run, so the suite stays fast)."""

from __future__ import annotations

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("restart", "--agents", "2", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "restart→healthz s" in lines[0], proc.stdout
    figures = lines[1].split()
    assert figures[0] == "2" and figures[4] == "2/2", proc.stdout  # both re-adopted with their pids
    assert float(figures[5]) > 0, proc.stdout  # the restarted proxy's CPU time until /healthz
    assert "empty start→healthz s" in lines[0] and float(figures[7]) > 0, proc.stdout  # the floor of the moment
