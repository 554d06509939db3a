"""The token benchmark signs in at the real provider, measures direct agentapi and agentproxy with an
API key and with the provider's token, and reports every way with its figures (a tiny run: figures
are not checked, only that each row has them and that no request failed, i.e. both the key and the
token were accepted on every request)."""

from __future__ import annotations

import json
import re

from .support import run_benchmark

NUMBER, SIGNED = r"\d+\.\d+", r"[+-]\d+\.\d+"
ROWS = {
    # p50 ms, added ms, req/s, ÷direct, CPU µs/req, p50 -key ms, req/s ÷key, CPU -key µs/req
    "direct agentapi": rf" +{NUMBER} +- +[\d,]+ +{NUMBER} +\d+ +- +- +-",
    "agentproxy, API key": rf" +{NUMBER} +{SIGNED} +[\d,]+ +{NUMBER} +\d+ +- +- +-",
    "agentproxy, OIDC token": rf" +{NUMBER} +{SIGNED} +[\d,]+ +{NUMBER} +\d+ +{SIGNED} +{NUMBER} +[+-]\d+",
}


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("token_auth", "--runs", "1", "--duration", "1", "--max-requests", "200", "--checks", "20",
                         "--json", str(tmp_path / "runs.json"), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {line[:26].strip(): line[26:] for line in proc.stdout.splitlines()}
    for name, pattern in ROWS.items():
        assert name in rows, proc.stdout
        assert re.fullmatch(pattern, rows[name]), (name, proc.stdout)
    assert "failed" not in proc.stdout
    assert re.search(r"the token check alone: \d+\.\d µs a token checked before .*, \d+\.\d µs a full check "
                     r"\(decode, RS256 signature", proc.stdout), proc.stdout
    assert re.search(r"fast path .*: \d+\.\d µs with the key, \d+\.\d µs with the token", proc.stdout), proc.stdout
    figures = json.loads((tmp_path / "runs.json").read_text())
    assert figures["checks"]["key_readings"] == 1  # the provider's keys read once, then cached
    run = figures["runs"][0]
    assert all(run[name][way]["requests"] > 0 for name in ("latency", "throughput") for way in ("direct", "key", "token"))
