"""The proxy benchmark starts every path in front of one real agentapi and reports each
(a tiny run, so the suite stays fast; figures are not checked, only that every path has them).

`bin/just bench-smoke` installs what it needs first: agentapi, the Go agentapi-proxy, configurable-http-proxy,
wrk and socat."""

from __future__ import annotations

import os
import re

from .support import run_benchmark

NUMBER, SIGNED = r"\d+\.\d+", r"[+-]\d+\.\d+"
HOP = SIGNED if os.geteuid() == 0 else "-"
"""The hop comes from a packet capture, which needs root; without it the column says so."""


def row(added: str, cpu: str, sse: str, hop: str, rss: str) -> re.Pattern[str]:
    """p50 ms, added ms, req/s, ratio, CPU µs/req, SSE added ms, SSE hop ms, held/lost of events, RSS growth MB."""
    return re.compile(rf" +{NUMBER} +{added} +[\d,]+ +{NUMBER} +{cpu} +{sse} +{hop} +\d+/\d+ of \d+ +{rss}")


PROXY = row(SIGNED, r"\d+", SIGNED, HOP, r"[+-]\d+\.\d")
ROWS = {
    "direct agentapi": row("-", r"\d+", r"±\d+\.\d+", "-", r"[+-]\d+\.\d"),
    "agentproxy": PROXY,
    "configurable-http-proxy 5.3.0": PROXY,
    "agentapi-proxy v1.73.0 (Go)": PROXY,
    "floor: byte relay, uvloop": PROXY,
    # socat forks per connection: no one process to take CPU or memory figures from.
    "floor: byte relay, socat (C)": row(SIGNED, "-", SIGNED, HOP, "-"),
}


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("proxy", "--runs", "1", "--duration", "1", "--max-requests", "300", "--messages", "1",
                         "--streams", "20", "--json", str(tmp_path / "runs.json"), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {line[:34].strip(): line[34:] for line in proc.stdout.splitlines()}
    for name, pattern in ROWS.items():
        assert name in rows, proc.stdout
        assert pattern.fullmatch(rows[name]), (name, proc.stdout)
    assert "wrk is missing" not in proc.stdout
    assert (tmp_path / "runs.json").exists()
