"""The benchmark of many agents' event streams through the proxy runs and reports its table (a tiny run)."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("agent_streams", "--agents", "12", "--messages", "3", "--interval", "0.5",
                         "--connect-timeout", "5", "--grace", "5", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in proc.stdout.splitlines() if "  " in line)
    for path in ("direct", "through the proxy"):
        assert rows[f"{path}: streams open / failed"] == "12 / 0", proc.stdout
        assert rows[f"{path}: events received of 36 / lost / duplicated / out of order"] == "36 / 0 / 0 / 0", proc.stdout
    for name in ("added by the proxy: p50 / p99", "proxy CPU per event relayed (opening the streams included)",
                 "proxy RSS: the agents alone / every stream open / after the messages"):
        assert name in rows, proc.stdout


def test_bad_arguments_are_one_line(tmp_path):
    proc = run_benchmark("agent_streams", "--agents", "0", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "--agents and --messages must be at least 1" in proc.stderr
    assert "Traceback" not in proc.stderr
