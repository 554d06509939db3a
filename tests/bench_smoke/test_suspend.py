"""The suspend benchmark runs and reports its figures (a tiny run, so the suite stays fast)."""

from __future__ import annotations

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("suspend", "--agents", "2", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "local: 2 resumes; resume-to-ready p50 " in proc.stdout, proc.stdout
