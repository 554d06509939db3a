"""Handing a pre-started agent its first message (see :mod:`agentproxy.launcher`): agentapi's
``GET /status`` and ``POST /message`` on loopback, and whether a saved conversation holds a
user message already. Standard library only: agent images hold agentproxy without its
dependencies.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

AGENTAPI_HOST = "localhost"  # the Host agentapi answers (agentproxy.launch.AGENTAPI_HOST)
FIRST_MESSAGE_TIMEOUT = 300.0
"""Seconds a pre-started member's launcher tries to hand its first message to agentapi."""


def saved_user_messages(state_file: str | None) -> int:
    """How many user messages an agentapi state file holds (0 when there is none to read)."""
    if state_file is None:
        return 0
    try:
        with open(state_file, "rb") as f:
            state = json.loads(f.read())
    except (OSError, ValueError):
        return 0
    messages = state.get("messages") if isinstance(state, dict) else None
    if not isinstance(messages, list):
        return 0
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "user")


def agentapi_call(port: int, method: str, path: str, body: Mapping[str, Any] | None = None,
                  timeout: float = 10.0) -> tuple[int, Any]:
    """``method path`` on the agentapi on ``port``: its status and its JSON (None when not JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Host": AGENTAPI_HOST, **({"Content-Type": "application/json"} if data is not None else {})}
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"null")
        except ValueError:
            return response.status, None
    finally:
        conn.close()


def agent_stable(port: int) -> bool:
    """Whether the agentapi on ``port`` answers ``stable`` (its program waits for input)."""
    try:
        status, answer = agentapi_call(port, "GET", "/status", timeout=2.0)
    except (OSError, http.client.HTTPException):
        return False
    return status == 200 and isinstance(answer, dict) and answer.get("status") == "stable"


def send_first_message(port: int, text: str, child: subprocess.Popen[bytes],
                       timeout: float = FIRST_MESSAGE_TIMEOUT, retry: float = 0.05) -> bool:
    """Hand ``text`` to the agentapi on ``port`` as a user message once it says ``stable``
    (it refuses one before); True once it took it. Gives up when ``child`` ends or after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        try:
            if agent_stable(port):
                status, _ = agentapi_call(port, "POST", "/message", {"content": text, "type": "user"},
                                          timeout=max(1.0, deadline - time.monotonic()))
                if status == 200:
                    return True
        except (OSError, http.client.HTTPException):
            pass
        threading.Event().wait(retry)
    return False
