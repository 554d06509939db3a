"""The k8s read path's benchmark runs on the imitation of the API server's lists and reports its
table (a tiny run, so the suite stays fast; the figures are not checked)."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_the_read_path_benchmark_runs(tmp_path):
    proc = run_benchmark("list_cache", "--agents", "6", "--requests", "2", "--idle", "0.2", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in proc.stdout.splitlines() if "  " in line)
    assert rows["agents listed / ready"] == "6 / 6", proc.stdout
    assert rows["writes asked for in all"] == "0", proc.stdout
    assert "GET /sessions/S/agents over HTTP, 2 of 6 agents p50 / p95" in rows, proc.stdout
    assert "GET /agents over HTTP, 50 agents changing a second, p50 / p95" in rows, proc.stdout
    assert int(rows["agents whose restarts the lists showed by then (the changes went through the watch)"]) > 0
