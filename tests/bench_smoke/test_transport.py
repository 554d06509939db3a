"""The transport benchmark applies to and watches its TLS server both ways and reports each
way's CPU per call and per event and their ratios (a tiny run: figures are not checked, only that
every row has one and that every call was answered and every event of every watch read)."""

from __future__ import annotations

import re

from .support import run_benchmark


def test_the_transport_benchmark_runs(tmp_path):
    proc = run_benchmark("transport", "--calls", "20", "--events", "20", "--interval", "0.001", "--rounds", "1",
                         cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for way, each in (("kr8s call_api (httpx), as before", "a call"), ("k8s client's call (aiohttp)", "a call"),
                      ("kr8s stream (httpx), as before", "an event"),
                      ("k8s client's watch stream (aiohttp)", "an event")):
        assert re.search(rf"^  {re.escape(way)} +\d+ µs CPU {each} \(median; rounds \d+\)$", proc.stdout, re.M), \
            proc.stdout
    assert len(re.findall(r"^  aiohttp / httpx +\d+\.\d\dx$", proc.stdout, re.M)) == 2, proc.stdout
