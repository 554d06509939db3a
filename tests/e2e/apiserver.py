"""Faults of the local control plane's API server, for the fault tests: freeze it
(SIGSTOP: its connections stay open and nothing answers) and thaw it (SIGCONT), or
kill it and start it again (``testenv/cluster.py restart``).

Only the API server of the control plane ``$KUBECONFIG`` belongs to is touched: the one
the pid file in that cluster's directory names, checked by pid and start time. Other
clusters cannot be faulted from a test, so there the tests are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

import psutil
import pytest
import yaml

from testenv import procs

ROOT = Path(__file__).resolve().parents[2]


def cluster_dir() -> Path:
    """The state directory of the cluster ``$KUBECONFIG`` belongs to (``testenv/cluster.py``
    writes the kubeconfig there), whatever ``AGENTPROXY_CLUSTER_DIR`` says."""
    return Path(os.environ["KUBECONFIG"]).resolve().parent


def require_local_control_plane() -> None:
    if os.environ.get("AGENTPROXY_TEST_LOCAL_CONTROL_PLANE") != "1":
        pytest.skip("needs the local control plane (just test) to fault its API server")


def process() -> psutil.Process:
    """The API server process the pid file names, if it is still the one that was started."""
    proc = procs.owned_process(cluster_dir(), "kube-apiserver")
    assert proc is not None, "the API server's pid file is gone or names another process"
    return proc


@contextlib.asynccontextmanager
async def frozen() -> AsyncIterator[psutil.Process]:
    """The API server stopped (SIGSTOP) for the body of an ``async with``; always continued after."""
    proc = process()
    proc.send_signal(signal.SIGSTOP)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGCONT)


def cluster_env() -> dict[str, str]:
    """The environment that makes ``testenv/cluster.py`` act on the cluster ``$KUBECONFIG``
    belongs to: its directory, and its port base (the API server listens on base + 2, as
    ``testenv/layout.py`` lays the ports out)."""
    config = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    port = urlparse(config["clusters"][0]["cluster"]["server"]).port
    return {**os.environ, "AGENTPROXY_CLUSTER_DIR": str(cluster_dir()), "AGENTPROXY_CLUSTER_PORT_BASE": str(port - 2)}


async def restart() -> asyncio.subprocess.Process:
    """Kill the API server and start it again; returns the running ``cluster.py restart`` (it ends
    once the new server is healthy)."""
    env = cluster_env()
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "testenv.cluster", "restart",
                                                "kube-apiserver", stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
