"""How much conversation a pod killed without warning (SIGKILL, OOMKilled, a dead node) loses:
the launcher's saves against the time.

The real launcher runs the real agentapi around the echo demo agent, as an agent's container
does (``--save-interval S``, ``local_mode.state_save_interval``, 2 s by default), on
127.0.0.1. Messages are sent in bursts (``--burst`` at once, as fast as agentapi takes them)
and alone, ``--messages`` in all; for each answer the benchmark takes the time from the answer
being in ``GET /messages`` to its being in the state file on disk: what a SIGKILL at that
moment would lose. Then agentapi is killed with SIGKILL right after the last answer of a burst
and started again on the same state file: the answers missing from the restored conversation
are counted.

Usage: ``python -m benchmarks.save_lag [--messages 30] [--burst 5] [--interval 2]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agentproxy.agentapi import locate
from agentproxy.launch import state_file
from testenv.ports import free_block

TIMEOUT = 60.0


def _call(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Host": "localhost", "Content-Type": "application/json"})
        response = conn.getresponse()
        return json.loads(response.read() or b"null") if response.status == 200 else None
    finally:
        conn.close()


def _until(check, what: str, poll: float = 0.005) -> float:
    began = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic()
        except OSError:
            pass
        if time.monotonic() - began > TIMEOUT:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


def _answered(port: int, text: str) -> bool:
    said = (_call(port, "GET", "/messages") or {}).get("messages") or []
    return any(m["role"] == "agent" and f"echo: {text}" in m["content"] for m in said)


def _stable(port: int) -> bool:
    return (_call(port, "GET", "/status") or {}).get("status") == "stable"


class DiskWatch:
    """Notes the first moment each answer is in the state file (polled every 5 ms in a thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seen: dict[str, float] = {}
        self.wanted: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                text = self.path.read_text(errors="replace")
            except OSError:
                continue
            now = time.monotonic()
            for word in list(self.wanted - set(self.seen)):
                if f"echo: {word}" in text:
                    self.seen[word] = now

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _start(agentapi: str, work: Path, port: int, interval: float, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "agentproxy.launcher", "--work-dir", str(work), "--save-interval", f"{interval:g}",
            "--", agentapi, "server", "--port", str(port), "--type", "custom", "--state-file",
            state_file(str(work)), "--", sys.executable, "-m", "agentproxy.demo_agent"]
    return subprocess.Popen(argv, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log.open("ab"), start_new_session=True)


def _kill(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)


def measure(args: argparse.Namespace, agentapi: str) -> None:
    with tempfile.TemporaryDirectory(prefix="agentproxy-bench-save-") as tmp:
        work, port = Path(tmp) / "work", free_block(1)[0]
        work.mkdir()
        saved_file = Path(state_file(str(work)))
        process = _start(agentapi, work, port, args.interval, Path(tmp) / "launcher.log")
        lags: list[float] = []
        sent: list[str] = []
        watch = DiskWatch(saved_file)
        try:
            _until(lambda: _stable(port), "agentapi to be stable")
            n = 0
            while n < args.messages:
                # A burst: each message as soon as agentapi takes the next one; then a quiet spell.
                burst = []
                for _ in range(min(args.burst if (n // args.burst) % 2 == 0 else 1, args.messages - n)):
                    text = f"message {n}"
                    watch.wanted.add(text)
                    _until(lambda: _stable(port), "a stable agent")
                    _call(port, "POST", "/message", {"content": text, "type": "user"})
                    answered = _until(lambda text=text: _answered(port, text), f"the answer to {text!r}")
                    burst.append((text, answered))
                    sent.append(text)
                    n += 1
                for text, answered in burst:
                    _until(lambda text=text: text in watch.seen, f"{text!r} saved")
                    lags.append(max(0.0, watch.seen[text] - answered))
            # The worst moment: SIGKILL right after the last answer of a burst.
            last: list[str] = []
            for _ in range(args.burst):
                text = f"last {len(last)}"
                _until(lambda: _stable(port), "a stable agent")
                _call(port, "POST", "/message", {"content": text, "type": "user"})
                _until(lambda text=text: _answered(port, text), f"the answer to {text!r}")
                last.append(text)
            _kill(process)
            kept = saved_file.read_text(errors="replace") if saved_file.exists() else ""
            lost = [t for t in last if f"echo: {t}" not in kept]
        finally:
            watch.stop()
            _kill(process)
        process = _start(agentapi, work, port, args.interval, Path(tmp) / "launcher.log")
        try:
            _until(lambda: _answered(port, sent[-1]), "the conversation restored", poll=0.05)
            restored = (_call(port, "GET", "/messages") or {}).get("messages") or []
            missing = [t for t in sent if not any(f"echo: {t}" in m["content"] for m in restored)]
        finally:
            _kill(process)
    print(f"launcher with --save-interval {args.interval:g} s, {len(lags)} answers "
          f"(bursts of {args.burst} and single messages), real agentapi and echo agent on 127.0.0.1:")
    print(f"  answer in /messages -> in the state file: p50 {statistics.median(lags) * 1000:.0f} ms, "
          f"p95 {sorted(lags)[int(0.95 * (len(lags) - 1))] * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms "
          f"(what a SIGKILL at that moment loses; goal: at most the interval)")
    print(f"  SIGKILL at once after the last of {len(last)} answers in a row: {len(lost)} of them lost "
          "(those younger than the save interval)")
    print(f"  restarted on the same state file: {len(sent) - len(missing)} of {len(sent)} earlier answers back")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30, help="messages timed (default 30)")
    parser.add_argument("--burst", type=int, default=5, help="messages per burst (default 5)")
    parser.add_argument("--interval", type=float, default=2.0, help="the launcher's --save-interval (default 2)")
    parser.add_argument("--agentapi", help="the agentapi binary (default: the one on PATH or in the cache)")
    args = parser.parse_args()
    agentapi = args.agentapi or locate()
    if agentapi is None:
        raise SystemExit("agentapi is not installed: run `bin/just agentapi`")
    measure(args, agentapi)


if __name__ == "__main__":
    main()
