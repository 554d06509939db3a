"""How a local agent is reported: its details in the API, its record in the state file,
its activity, its memory limit in bytes, and the texts of its failures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ...quantity import parse_quantity
from ..base import AgentStatus, BackendError
from ..suspension import AgentActivity, timestamp
from .logs import AgentLog

MESSAGE_TAIL_LINES = 20
MESSAGE_TAIL_CHARS = 4000


def agent_details(supervisor: Any) -> dict[str, Any]:
    """The ``details`` of a local agent's state, from its supervisor's fields: process, port,
    paths, command, the last sample of its tree and the last end of agentapi."""
    process = supervisor.process
    sample = supervisor.sample
    last_state = supervisor.last_state
    details: dict[str, Any] = {
        "pid": process.pid if process is not None else None,
        "port": supervisor.port,
        "work_dir": str(supervisor.work_dir),
        "log_file": str(supervisor.log.path),
        "command": list(supervisor.spec.command),
        "agentapi_type": supervisor.spec.agentapi_type,
        "adopted": bool(process is not None and process.adopted),
        "processes": len(sample.members) if sample else None,
        "cpu_percent": sample.cpu_percent if sample else None,
        "rss_bytes": sample.rss_bytes if sample else None,
        "memory_limit_bytes": supervisor.memory_limit,
        "work_dir_bytes": supervisor.work_dir_bytes,
        "last_exit_code": (last_state or {}).get("exit_code"),
        "last_state": last_state,
        "start": supervisor.start_kind,
    }
    if supervisor.pool is not None:
        details["pool"] = supervisor.pool
    if not supervisor.work_dir_complete:
        details["work_dir_bytes_partial"] = True
    return details


def state_key(supervisor: Any) -> tuple[Any, ...]:
    """Everything a local agent's state is made of (what :func:`agent_details`,
    :func:`last_active` and the supervisor's own fields give it): while the key stays equal,
    so does the state, and a reader may keep the state (and the JSON made of it) it got before.

    Every input of the state must be here: a change missing from the key would stay unseen
    until another one came (the unit tests change each input and look at the next list)."""
    process = supervisor.process
    follower = supervisor.conversation.follower
    return (supervisor.spec, supervisor.status, supervisor.reason, supervisor.message, supervisor.port,
            supervisor.restarts, supervisor.created_at, process, process.adopted if process is not None else None,
            supervisor.sample, supervisor.memory_limit, supervisor.work_dir_bytes, supervisor.work_dir_complete,
            supervisor.last_state, supervisor.suspension, supervisor.active_at, supervisor.ready_at,
            follower.last_message_at if follower is not None else None, supervisor.question,
            supervisor.work_dir, supervisor.log.path, supervisor.start_kind, supervisor.pool)


def agent_record(supervisor: Any) -> dict[str, Any]:
    """What the state file keeps of a local agent: enough for a restarted proxy to re-adopt
    its process (pid, start time, command line), or to start it again on its port."""
    process = supervisor.process
    failed = supervisor.status is AgentStatus.FAILED
    suspension = supervisor.suspension
    return {
        "spec": supervisor.spec.to_json(),
        "port": supervisor.port,
        "created_at": supervisor.created_at.isoformat(),
        "restarts": supervisor.restarts,
        "tag": supervisor.tag,
        # An agent still being adopted keeps the identity it had: a proxy stopped meanwhile
        # re-adopts it next time rather than restarting it.
        "process": (process.identity.to_dict() if process is not None and not process.exited
                    else supervisor.adopting.to_dict() if supervisor.adopting is not None else None),
        "status": "failed" if failed else "suspended" if suspension is not None else "running",
        "reason": supervisor.reason if failed else None,
        "message": supervisor.message if failed else None,
        "last_state": supervisor.last_state,
        "suspension": suspension.to_dict() if suspension is not None else None,
        "active_at": timestamp(supervisor.active_at) if supervisor.active_at is not None else None,
        **({"start": "warm", "pool": supervisor.pool} if supervisor.start_kind == "warm" else {}),
    }


def agent_activity(supervisor: Any) -> AgentActivity:
    """agentapi's status and last message as the conversation follower of the current run saw them."""
    follower = supervisor.conversation.follower
    if follower is None:
        return AgentActivity()
    at = follower.last_message_at
    return AgentActivity(follower.status, datetime.fromtimestamp(at, UTC) if at else None)


def last_active(supervisor: Any) -> datetime | None:
    """When a local agent was last in use: the latest of the last recorded request, the last
    message seen and its becoming ready."""
    seen = [t for t in (supervisor.active_at, supervisor.ready_at, agent_activity(supervisor).last_message_at)
            if t is not None]
    return max(seen) if seen else None


def memory_limit_bytes(quantity: str) -> int | None:
    """The memory limit a local agent is held to, None for none."""
    try:
        value = int(parse_quantity(quantity))
    except ValueError:
        return None
    return value if value > 0 else None


def human_bytes(n: float) -> str:
    """``123 B``, ``1.5 KiB``, ... ``2.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def failure_text(exc: BaseException) -> str:
    """One line about an error: the backend's message, the system's, or the exception's."""
    if isinstance(exc, BackendError):
        return exc.message
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def log_tail(agent_log: AgentLog) -> str:
    """The last lines of an agent's log, for the message of a failure."""
    text = agent_log.tail(MESSAGE_TAIL_LINES).rstrip("\n")
    if len(text) > MESSAGE_TAIL_CHARS:
        text = "..." + text[-MESSAGE_TAIL_CHARS:]
    return text or "(the log is empty)"
