"""The create-to-first-answer benchmark (Claude Code against echo) runs and reports its table."""

from __future__ import annotations

from .support import run_benchmark


def test_benchmark_smoke(tmp_path, claude):
    proc = run_benchmark("first_answer", "--runs", "1", cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("create-to-first-answer, local mode, 1 runs each"), proc.stdout
    assert [line.split()[0] for line in lines[2:]] == ["echo", "claude"], proc.stdout
