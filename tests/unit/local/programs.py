"""Agent programs for the local backend's tests: ``python3 programs.py MODE [ARGS]``.

Each runs in the agent's work directory (its cwd) and leaves its evidence there
as files. Every wait is bounded (``LIFETIME``), so nothing outlives a test run
for long even if a test fails to clean up.

Modes:

- ``serve``: print a prompt and wait.
- ``crash CODE``: append the start time to ``starts.txt``, say so, exit with CODE a moment later.
- ``crash-first N CODE``: like ``crash`` for the first N starts, then ``serve``.
- ``tree``: start a child and a grandchild in the agent's process group and a child
  in a session of its own that ignores SIGTERM, SIGINT and SIGHUP; write their
  pids to ``tree.json``; wait.
- ``hog MIB``: on the first start only (``hogged`` marks it), hold MIB MiB of memory; wait.
- ``env``: write the environment to ``env.json``; serve.
- ``write BYTES``: write a file of BYTES bytes (``data.bin``); serve.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

LIFETIME = 120.0
CRASH_PAUSE = 0.3

STUBBORN = ("import signal, time\n"
            "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP): signal.signal(s, signal.SIG_IGN)\n"
            f"time.sleep({LIFETIME})\n")
SLEEPER = f"import time; time.sleep({LIFETIME})"
PARENT = ("import subprocess, sys, time\n"
          f"g = subprocess.Popen([sys.executable, '-c', {STUBBORN!r}])\n"
          "print(g.pid, flush=True)\n"
          f"time.sleep({LIFETIME})\n")


def serve() -> int:
    print(f"program {os.getpid()} ready\n> ", flush=True)
    time.sleep(LIFETIME)
    return 0


def crash(code: int) -> int:
    """Say so, give agentapi a moment to read the terminal (it logs the last screen of an
    agent that failed), then fail."""
    print("crashing on purpose", flush=True)
    time.sleep(CRASH_PAUSE)
    return code


def starts() -> int:
    with open("starts.txt", "a") as out:
        out.write(f"{time.time()}\n")
    with open("starts.txt") as src:
        return len(src.read().split())


def main(argv: list[str]) -> int:
    mode, args = argv[0], argv[1:]
    if mode == "serve":
        return serve()
    if mode == "crash":
        starts()
        return crash(int(args[0]))
    if mode == "crash-first":
        if starts() <= int(args[0]):
            return crash(int(args[1]))
        return serve()
    if mode == "tree":
        parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        loner = subprocess.Popen([sys.executable, "-c", STUBBORN], start_new_session=True)
        with open("tree.json.tmp", "w") as out:
            json.dump({"self": os.getpid(), "child": parent.pid, "grandchild": grandchild, "loner": loner.pid}, out)
        os.replace("tree.json.tmp", "tree.json")
        return serve()
    if mode == "hog":
        if not os.path.exists("hogged"):
            open("hogged", "w").close()
            block = b"\1" * (int(args[0]) * 1024 * 1024)  # written, so resident
            print(f"holding {len(block) >> 20} MiB", flush=True)
            time.sleep(LIFETIME)
        return serve()
    if mode == "env":
        with open("env.json.tmp", "w") as out:
            json.dump(dict(os.environ), out)
        os.replace("env.json.tmp", "env.json")
        return serve()
    if mode == "write":
        with open("data.bin", "wb") as out:
            out.write(b"\0" * int(args[0]))
        return serve()
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))  # agentapi interrupts its agent on shutdown
    sys.exit(main(sys.argv[1:]))
