"""``agentproxy agents hooks|schedules|deliveries``: the triggers of a server, as tables; and
``agents hooks put ID --file FILE`` / ``agents hooks rm ID``: hooks defined at run time."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from . import output
from .errors import EXIT_OK, UsageProblem
from .http import ApiClient


def _when(at: float | None) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S") if at else ""


def _hook_table(hooks: list[dict[str, Any]]) -> str:
    rows = [[h["id"], h["scheme"], ",".join(h["match"]["events"]) or "any", ",".join(h["match"]["labels"]) or "",
             h.get("owner") or "", h.get("profile") or h.get("agent") or "", h["reuse"], str(h["max_running"] or ""),
             h.get("source") or ""]
            for h in hooks]
    return output.terminal_safe(output.table(rows, ("HOOK", "SCHEME", "EVENTS", "LABELS", "OWNER", "RUNS", "REUSE",
                                                    "MAX", "SOURCE")))


async def hooks(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """List the hooks: id, scheme, what they match, who they run as, where they are defined."""
    answer = await client.request("GET", "/hooks")
    if args.output != "table":
        out.write(output.dump(answer, args.output))
        return EXIT_OK
    out.write(_hook_table(answer["hooks"]))
    return EXIT_OK


def _definition(path: str) -> Any:
    """The hook's fields from a YAML or JSON file (JSON is YAML); a one-line error otherwise."""
    import yaml

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise UsageProblem(f"--file: {exc.strerror or exc}: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageProblem(f"--file: not YAML or JSON{where}: {path}") from None
    if not isinstance(data, dict):
        raise UsageProblem(f"--file: must hold a mapping of hook fields: {path}")
    return data


async def hook_put(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Define or replace a hook from a file (the server checks it; its error names the field)."""
    answer = await client.request("PUT", f"/hooks/{quote(args.id, safe='')}", json_body=_definition(args.file))
    if args.output != "table":
        out.write(output.dump(answer, args.output))
        return EXIT_OK
    out.write(_hook_table([answer]))
    return EXIT_OK


async def hook_rm(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Delete a hook defined through the API."""
    await client.request("DELETE", f"/hooks/{quote(args.id, safe='')}", text=True)
    out.write(f"deleted hook {args.id}\n")
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
