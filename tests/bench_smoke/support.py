"""Running a benchmark once, tiny, from the unit tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, *args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.NAME ARGS`` in ``cwd`` (its files land there), the repository on the module path."""
    return subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=timeout)
