"""``agentproxy agents hooks|schedules|deliveries``: the triggers of a server, as tables."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from . import output
from .errors import EXIT_OK
from .http import ApiClient


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else ""


async def hooks(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """List the hooks: id, scheme, what they match, who they run as."""
    answer = await client.request("GET", "/hooks")
    if args.output != "table":
        out.write(output.dump(answer, args.output))
        return EXIT_OK
    rows = [[h["id"], h["scheme"], ",".join(h["match"]["events"]) or "any", ",".join(h["match"]["labels"]) or "",
             h.get("owner") or "", h.get("profile") or h.get("agent") or "", h["reuse"], str(h["max_running"] or "")]
            for h in answer["hooks"]]
    out.write(output.terminal_safe(output.table(rows, ("HOOK", "SCHEME", "EVENTS", "LABELS", "OWNER", "RUNS",
                                                       "REUSE", "MAX"))))
    return EXIT_OK


def _claimed(claim: Any) -> str:
    """The replica that fired the latest tick; ``(open)`` while its run is not made yet."""
    if not isinstance(claim, dict):
        return ""
    return f"{claim.get('by') or ''}{'' if claim.get('done') else ' (open)'}"


async def schedules(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """List the schedules: cron, time zone, last and next tick, the replica that fired the latest."""
    answer = await client.request("GET", "/schedules")
    if args.output != "table":
        out.write(output.dump(answer, args.output))
        return EXIT_OK
    rows = [[s["id"], s["cron"], s["timezone"], s["overlap"], s.get("last_tick") or "", s.get("next_tick") or "",
             str(s.get("missed") or 0), _claimed(s.get("claim"))] for s in answer["schedules"]]
    out.write(output.terminal_safe(output.table(rows, ("SCHEDULE", "CRON", "TIMEZONE", "OVERLAP", "LAST", "NEXT",
                                                       "MISSED", "REPLICA"))))
    return EXIT_OK


async def deliveries(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """List recent deliveries (hooks in, schedule ticks, notifications out), the newest first."""
    query = f"?limit={args.limit}" + (f"&kind={args.kind}" if args.kind else "")
    answer = await client.request("GET", f"/triggers/deliveries{query}")
    if args.output != "table":
        out.write(output.dump(answer, args.output))
        return EXIT_OK
    rows = []
    for d in answer["deliveries"]:
        result = d.get("result") or d.get("error") or d.get("type") or ""
        rows.append([_when(d.get("at")), d["kind"], d["name"], "" if d.get("status") is None else str(d["status"]),
                     str(d.get("agent") or ""), str(result)[:80]])
    out.write(output.terminal_safe(output.table(rows, ("AT", "KIND", "NAME", "STATUS", "AGENT", "RESULT"))))
    return EXIT_OK
