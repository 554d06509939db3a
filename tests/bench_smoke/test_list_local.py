"""The benchmark of lists of local agents runs and reports its table (a tiny run)."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("list_local", "--agents", "3", "--requests", "3", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in proc.stdout.splitlines() if "  " in line)
    assert rows["processes left in the agents' directories after delete"] == "0", proc.stdout
    for name in ("GET /agents over HTTP, 3 agents", "list body in the process, JSON once per change p50 / p95",
                 "before / after (in the process, CPU p50)", "proxy RSS growth per supervised agent"):
        assert any(row.startswith(name) for row in rows), proc.stdout
