"""``python3 -m agentproxy.keywait FILE``: print the key in ``FILE`` once it is there.

The ``apiKeyHelper`` of a pre-started Claude Code pool member (see :mod:`agentproxy.launcher`).
Claude Code runs its helper once at start, in the background, and keeps what it printed; a
member starts before its owner and key are known, so the helper waits (polling the file,
without a process per look) until the binding writes the key, and the first request of the
first turn carries it. After ``--wait`` seconds (default 600) it prints nothing: Claude Code's
first request is then answered 401 and it runs the helper again, which finds the file at once.
Standard library only: agent images hold agentproxy without its dependencies.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

POLL = 0.05
"""Seconds between two looks at the file."""


def read_key(path: str) -> str | None:
    """The key in ``path``, or None while it is missing or empty."""
    try:
        with open(path, encoding="utf-8") as f:
            key = f.read().strip()
    except OSError:
        return None
    return key or None


def main(argv: Sequence[str] | None = None) -> int:
    """Print the key once it is there; exit 1 without output after the wait."""
    parser = argparse.ArgumentParser(prog="python3 -m agentproxy.keywait", description=main.__doc__)
    parser.add_argument("file", help="the file the binding writes the key to")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for it (default 600)")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        key = read_key(args.file)
        if key is not None:
            sys.stdout.write(key)
            return 0
        if time.monotonic() >= deadline:
            return 1
        time.sleep(POLL)


if __name__ == "__main__":
    sys.exit(main())
