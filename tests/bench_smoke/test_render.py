"""The render benchmark runs, reports its table and confirms that templates
are compiled once per start (a tiny run, so the suite stays fast)."""

from __future__ import annotations

from agentproxy.render import SHARED, TEMPLATES

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("render", "--agents", "5", "--repeat", "2", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "render for a create (warm)" in proc.stdout and "render again (cached)" in proc.stdout
    assert "first render (cold, compiles)" in proc.stdout
    n = len(TEMPLATES) + len(SHARED)
    assert f"[{n}, {n}] per cold start, [0, 0] during the warm loops" in proc.stdout
