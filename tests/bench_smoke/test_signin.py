"""The sign-in benchmark goes from the dashboard signed out, through the real provider's login page,
to the first agent's answer in Chromium, and reports the times and a person's clicks and keys
(one run: the times are not checked, the clicks and keys are those of the steps it takes)."""

from __future__ import annotations

import json
import re

from .support import run_benchmark


def test_benchmark_smoke(tmp_path):
    proc = run_benchmark("signin", "--runs", "1", "--json", str(tmp_path / "runs.json"), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for label in ("open to signed in", "Create to the agent's answer", "open to the agent's answer"):
        assert re.search(rf"^{re.escape(label)} +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d$", proc.stdout, re.M), proc.stdout
    assert "7 clicks" in proc.stdout and "19 keys typed" in proc.stdout, proc.stdout
    (run,) = json.loads((tmp_path / "runs.json").read_text())
    assert 0 < run["signed_in_s"] < run["total_s"] and 0 < run["create_to_answer_s"] < run["total_s"], run
