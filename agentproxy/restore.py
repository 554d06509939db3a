"""Is an agent's conversation back? The readiness rule of both modes, and the check a pod runs.

agentapi (v0.12) loads its ``--state-file`` not when it starts serving but later, in
its screen loop, at the first snapshot where the agent shows its input prompt: for a
moment ``GET /status`` answers while ``GET /messages`` holds only the startup screen
(one agent message, id 0). Loading replaces the messages with the saved ones, and
from then on they only grow. So an agent's conversation is back once agentapi answers
with at least as many messages as its state file holds (:func:`restored`); a state
file that is missing, unreadable or not agentapi's (which agentapi will not load
either) holds nothing to wait for.

Local mode reads the file in the agent's work directory and applies the rule in its
readiness probe; in Kubernetes the pod's startup probe runs ``python3 -m
agentproxy.restore --port P --state-file F`` (standard library only: the agent image
has Python and agentproxy without its dependencies), so a pod is Ready, and the
proxy forwards to it, only with its conversation back. A warm pool member's probe adds
``--waiting-port B``: its launcher waiting for its binding on ``B`` has started too (agentapi
starts only once it is bound).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
from collections.abc import Sequence
from typing import Any

STATE_VERSION = 1
"""The state file version agentapi v0.12 writes and loads."""


def saved_messages(content: bytes | str) -> int:
    """How many messages an agentapi state file holds (0 when it is not one agentapi loads)."""
    try:
        state = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return 0
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return 0
    messages = state.get("messages")
    return len(messages) if isinstance(messages, list) else 0


def read_saved_messages(path: str) -> int:
    """:func:`saved_messages` of the file at ``path`` (0 when there is none or it cannot be read).
    Blocking: call it from a worker thread in a server."""
    try:
        with open(path, "rb") as src:
            return saved_messages(src.read())
    except OSError:
        return 0


def restored(saved: int, messages: Any) -> bool:
    """True when agentapi's ``GET /messages`` answer holds the ``saved`` messages of its state
    file (agentapi replaces its startup message with them when it loads the file)."""
    if saved <= 1:
        return True  # nothing, or only a startup screen: nothing can be missing
    listed = messages.get("messages") if isinstance(messages, dict) else None
    return isinstance(listed, list) and len(listed) >= saved


# --- the check a pod's startup probe runs ------------------------------------------------------

def _get_json(port: int, path: str, host: str, timeout: float) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise OSError(f"GET {path} answered {response.status}")
    return json.loads(body)


def check(port: int, state_file: str, host: str = "localhost", timeout: float = 5.0) -> str | None:
    """None when the agentapi on ``port`` answers with its conversation back, else why not."""
    try:
        status = _get_json(port, "/status", host, timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"agentapi does not answer on port {port}: {exc}"
    if not isinstance(status, dict) or "status" not in status:
        return "agentapi's GET /status has no status"
    saved = read_saved_messages(state_file)
    if saved <= 1:
        return None
    try:
        messages = _get_json(port, "/messages", host, timeout)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"agentapi's GET /messages failed: {exc}"
    if not restored(saved, messages):
        return f"agentapi has not loaded the {saved} messages of {state_file} yet"
    return None


def binding_state(port: int, timeout: float = 5.0) -> str | None:
    """What the launcher of a warm pool member on ``port`` says (see :mod:`agentproxy.launcher`):
    ``waiting`` for its binding, ``starting`` (pre-started, its agent not stable yet), or None
    when nothing listens there (it is bound, or not a member)."""
    try:
        answer = _get_json(port, "/healthz", "localhost", timeout)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    state = answer.get("state") if isinstance(answer, dict) else None
    return state if isinstance(state, str) else None


def waiting_for_binding(port: int, timeout: float = 5.0) -> bool:
    """True when the launcher of a warm pool member waits for its binding on ``port``: its
    container has started, and agentapi has not yet (or, pre-started, its agent is stable)."""
    return binding_state(port, timeout) == "waiting"


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when the agent answers with its conversation back (or, with ``--waiting-port``,
    while a pool member's launcher waits for its binding), else 1 with one line why."""
    parser = argparse.ArgumentParser(prog="python3 -m agentproxy.restore", description=main.__doc__)
    parser.add_argument("--port", type=int, required=True, help="agentapi's port")
    parser.add_argument("--state-file", required=True, help="agentapi's --state-file")
    parser.add_argument("--host", default="localhost", help="the Host header agentapi accepts")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--waiting-port", type=int, help="a pool member's binding port: waiting there passes too")
    args = parser.parse_args(argv)
    if args.waiting_port is not None:
        state = binding_state(args.waiting_port, args.timeout)
        if state == "waiting":
            return 0
        if state == "starting":  # pre-started: agentapi answers, but its program is not ready yet
            print("the pool member's agent is not stable yet", file=sys.stderr)
            return 1
    problem = check(args.port, args.state_file, args.host, args.timeout)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
