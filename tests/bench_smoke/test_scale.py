"""The scale benchmark's arguments (it needs a cluster to run; the e2e cluster runs it)."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.scale import _concurrencies

from .support import run_benchmark


def test_concurrencies_are_a_list_of_positive_numbers():
    assert _concurrencies("50,100, 200") == [50, 100, 200]
    for bad in ("", "0,10", "-5"):
        with pytest.raises(argparse.ArgumentTypeError):
            _concurrencies(bad)


def test_without_a_cluster_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    proc = run_benchmark("scale", "--agents", "10", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("bench-scale: no cluster") and "Traceback" not in proc.stderr
