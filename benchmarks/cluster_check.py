"""What the benchmarks that need a cluster check before they start: that ``$KUBECONFIG``
names a file, and that its API server answers. Either failure ends the benchmark with one
line saying what to do, instead of a traceback from deep inside the client."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import kr8s.asyncio


def require_cluster(bench: str) -> str:
    """The kubeconfig's path, or exit with one line when there is no cluster to talk to."""
    first = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not first or not Path(first).is_file():
        sys.exit(f"{bench}: no cluster: $KUBECONFIG is unset or names no file; start one with "
                 "`bin/just cluster-up` (or kind-up) and export the KUBECONFIG it prints")
    try:
        asyncio.run(_version())
    except Exception as exc:  # kr8s raises plain exceptions (TypeError, ValueError...) for unusable configs
        sys.exit(f"{bench}: the API server of {first} cannot be reached ({type(exc).__name__}: {exc}); "
                 "is the cluster up and the file a kubeconfig? (`bin/just cluster-status`)")
    return first


async def _version() -> None:
    api = await kr8s.asyncio.api()
    await asyncio.wait_for(api.version(), 30)
