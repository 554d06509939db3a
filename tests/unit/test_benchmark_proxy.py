"""The proxy benchmark starts all four paths in front of one real agentapi and reports each
(a tiny run, so the suite stays fast; figures are not checked, only that every path has them).

`bin/just unit` installs what it needs first: agentapi, the Go agentapi-proxy, configurable-http-proxy
and wrk."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "proxy.py"
ROW = re.compile(r" +\d+\.\d+ +(-|[+-]\d+\.\d+) +[\d,]+ +\d+\.\d+ +\d+ +[±+-]\d+\.\d+ +\d+/\d+ of \d+ +[+-]\d+\.\d")
"""p50 ms, added ms, req/s, ratio, CPU µs/req, SSE added ms, held/lost of events, RSS growth MB."""
NAMES = ("direct agentapi", "agentproxy", "configurable-http-proxy 5.3.0", "agentapi-proxy v1.73.0 (Go)")


def test_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCHMARK), "--runs", "1", "--duration", "1", "--max-requests", "300",
                           "--messages", "1", "--streams", "20", "--json", str(tmp_path / "runs.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {line[:34].strip(): line[34:] for line in proc.stdout.splitlines()}
    for name in NAMES:
        assert name in rows, proc.stdout
        assert ROW.fullmatch(rows[name]), proc.stdout
    assert "wrk is missing" not in proc.stdout
    assert (tmp_path / "runs.json").exists()
