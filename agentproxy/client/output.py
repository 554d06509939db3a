"""How agents are shown: a kubectl-like table, JSON or YAML. Pure functions of the API's JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

FORMATS = ("table", "json", "yaml")
COLUMNS = ("SESSION", "ID", "TYPE", "STATUS", "REASON", "RESTARTS", "AGE")


def age(created_at: str | None, now: datetime | None = None) -> str:
    """How long ago ``created_at`` (ISO 8601) was, the way kubectl says it: 42s, 5m10s, 3h, 2d4h."""
    if not created_at:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(created_at)
    except ValueError:
        return "<unknown>"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if days < 2:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def row(agent: dict[str, Any], now: datetime | None = None) -> list[str]:
    """The table cells of one agent."""
    return [str(agent.get("session", "")), str(agent.get("id", "")), str(agent.get("agent", "")),
            str(agent.get("status", "")), str(agent.get("reason") or "<none>"),
            str(agent.get("restarts", 0)), age(agent.get("created_at"), now)]


def table(rows: Sequence[Sequence[str]], header: Sequence[str] = COLUMNS) -> str:
    """Left-aligned columns separated by three spaces, kubectl style."""
    return TableWriter(header).lines(rows, header=True)


class TableWriter:
    """Writes rows in columns that keep their widths from one call to the next (so that the
    rows ``ls --watch`` adds line up with the table above them); a wider cell widens its column."""

    def __init__(self, header: Sequence[str] = COLUMNS) -> None:
        self.header = list(header)
        self.widths = [len(h) for h in header]

    def lines(self, rows: Iterable[Sequence[str]], header: bool = False) -> str:
        """The text of ``rows`` (after the header line when ``header``)."""
        cells = [[_one_line(c) for c in r] for r in ([self.header] if header else []) + [list(r) for r in rows]]
        for r in cells:
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, r, strict=False)]
        return "".join("   ".join(c.ljust(w) for c, w in zip(r, self.widths, strict=False)).rstrip() + "\n" for r in cells)


def agents_table(agents: Iterable[dict[str, Any]], now: datetime | None = None) -> str:
    """The table of some agents, with its header line."""
    return table([row(a, now) for a in agents])


def dump(data: Any, fmt: str) -> str:
    """``data`` as JSON (indented) or YAML."""
    if fmt == "yaml":
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def dump_line(data: Any) -> str:
    """``data`` as one JSON line (for streams)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"


DETAIL_LIMIT = 240
"""Characters of a status message shown on one line (``agents get -o yaml`` has all of it)."""


def describe_status(agent: dict[str, Any]) -> str:
    """``status`` with the reason and message when there are any, e.g. ``starting (Starting: waiting ...)``."""
    status = str(agent.get("status", "?"))
    reason, message = agent.get("reason"), agent.get("message")
    detail = _one_line(": ".join(str(x) for x in (reason, message) if x))
    if len(detail) > DETAIL_LIMIT:
        detail = detail[:DETAIL_LIMIT - 1] + "…"
    return f"{status} ({detail})" if detail else status


_CONTROL = {c: None for c in [*range(0, 9), *range(11, 32), 127, *range(0x80, 0xA0)]}


def terminal_safe(text: str) -> str:
    """``text`` without control characters other than newline and tab: what a server or an
    agent says must not move the cursor, recolour or retitle the user's terminal."""
    return str(text).translate(_CONTROL)


def _one_line(text: str) -> str:
    # A value with a newline would break the table (and could fake rows).
    return " ".join(terminal_safe(text).split())
