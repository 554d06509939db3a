"""The watch-read benchmark watches its TLS server both ways and reports each way's CPU per event
and their ratio (a tiny run: figures are not checked, only that every row has one and that every
event of every watch was read)."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_the_watch_read_benchmark_runs(tmp_path):
    proc = run_benchmark("watch_read", "--events", "20", "--interval", "0.001", "--rounds", "1",
                         cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for way in ("kr8s stream (httpx), as before", "k8s client's watch stream (aiohttp)"):
        assert re.search(rf"^{re.escape(way)} +\d+ µs CPU an event \(median; rounds \d+\)$", proc.stdout, re.M), proc.stdout
    assert re.search(r"^aiohttp / httpx +\d+\.\d\dx$", proc.stdout, re.M), proc.stdout
