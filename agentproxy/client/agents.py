"""``agentproxy agents ls|watch|get|create|rm|suspend|resume|logs``: each an ``async`` function of the
parsed arguments.

Results go to stdout (the format ``-o`` asks for); progress and questions go to
stderr, so that a script can pipe the output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from . import output
from .errors import EXIT_OK, AgentFailed, ClientError, TimedOut, UsageProblem
from .http import ApiClient, Subscription, agent_path
from .startview import LiveProgress, PlainProgress, display_for

READY, FAILED, STOPPED = "ready", "failed", "stopped"
POLL_INTERVAL = 1.0
"""How often a wait also asks for the agent (in case the event stream was cut)."""
STEPS_GRACE = 5.0
"""Seconds a wait that saw the agent ready gives its progress stream to say the last steps."""


def show_agents(agents: list[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Print agents as a table, or as ``{"agents": [...]}`` in JSON/YAML."""
    if fmt == "table":
        out.write(output.agents_table(agents) if agents else "No agents found.\n")
    else:
        out.write(output.dump({"agents": agents}, fmt))


def show_agent(agent: dict[str, Any], fmt: str, out: TextIO) -> None:
    """Print one agent: a one-row table, or its whole JSON/YAML document."""
    out.write(output.agents_table([agent]) if fmt == "table" else output.dump(agent, fmt))


async def watch(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """``agents watch``: the agents, then every change of them from ``/events`` (``ls --watch``)."""
    args.watch = True
    return await ls(client, args, out)


async def ls(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """List agents; with ``--watch`` keep printing changes from ``/events``."""
    if not args.watch:
        show_agents(await client.list_agents(args.session, args.status), args.output, out)
        return EXIT_OK
    params = {"session": args.session} if args.session else None
    writer = output.TableWriter()
    shown: dict[tuple[str, str], list[str]] = {}  # the last row printed of each agent
    # Subscribe first, then list: no change between the two is lost.
    async with Subscription(client, "/events", params) as events:
        agents = await client.list_agents(args.session, args.status)
        if args.output == "table":
            rows = [output.row(a) for a in agents]
            # The widest rows of the first screen set the columns (ages grow, ids vary).
            writer.lines(rows + [["", "", "", "stopping", "", "", "00m00s"]])
            out.write(writer.lines(rows, header=True))
            shown = {(a["session"], a["id"]): r for a, r in zip(agents, rows, strict=True)}
        else:
            for agent in agents:
                _write_streamed(out, agent, args.output)
        out.flush()
        while True:
            event = await events.next()
            if event is None or event.name != "status":
                continue
            agent = json.loads(event.data)
            if args.status and agent.get("status") != args.status:
                continue
            if args.output == "table":
                cells = output.row(agent)
                key = (agent["session"], agent["id"])
                if shown.get(key) == cells:
                    continue  # e.g. "deleted" after "stopped": nothing new to see
                shown[key] = cells
                out.write(writer.lines([cells]))
            else:
                _write_streamed(out, agent, args.output)
            out.flush()


def _write_streamed(out: TextIO, agent: dict[str, Any], fmt: str) -> None:
    """One agent of a stream: a JSON line, or a YAML document."""
    out.write(output.dump_line(agent) if fmt == "json" else "---\n" + output.dump(agent, "yaml"))


async def get(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Show one agent."""
    show_agent(await client.get_agent(args.session, args.agent), args.output, out)
    return EXIT_OK


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON body of ``agents create``."""
    body: dict[str, Any] = {}
    if args.id:
        body["id"] = args.id
    if args.agent_type:
        body["agent"] = args.agent_type
    if args.env:
        body["env"] = dict(args.env)
    if args.message is not None:
        body["message"] = args.message
    for name in ("profile", "share"):
        if getattr(args, name, None):
            body[name] = getattr(args, name)
    return body


async def profiles(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """List the profiles the caller may use (``*`` marks the default)."""
    answer = await client.request("GET", "/profiles")
    if args.output != "table":
        out.write(output.dump(answer, args.output))
        return EXIT_OK
    rows = [[p["name"] + ("*" if p["name"] == answer.get("default") else ""), p.get("agent") or "",
             p.get("image") or "", ",".join(p.get("groups") or []) or "everyone", p.get("description") or ""]
            for p in answer["profiles"]]
    out.write(output.terminal_safe(output.table(rows, ("PROFILE", "AGENT", "IMAGE", "GROUPS", "DESCRIPTION"))))
    return EXIT_OK


async def create(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> int:
    """Create an agent; with ``--wait``, follow it until ready, failed or the timeout."""
    if not args.wait:
        agent = await client.create_agent(args.session, create_body(args))
        show_agent(agent, args.output, out)
        return EXIT_OK
    display = display_for(err, plain=getattr(args, "plain", False))
    async with display, StatusWatcher(client, args.session, display) as watcher:
        agent = await client.create_agent(args.session, create_body(args))
        final = await watcher.wait(agent, args.timeout, steps=True)
    show_agent(final, args.output, out)
    return EXIT_OK


async def rm(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr, ask: Callable[[str], str] = input) -> int:
    """Delete an agent; ``--purge`` (which deletes its data too) asks first unless ``--yes``."""
    if args.purge and not args.yes:
        if not sys.stdin.isatty():
            raise UsageProblem("--purge also deletes the agent's data: confirm with --yes")
        print(f"Delete agent {args.session}/{args.agent} and all its data? [y/N] ", end="", file=err, flush=True)
        if ask("").strip().lower() not in ("y", "yes"):
            print("Nothing deleted.", file=err)
            return EXIT_OK
    agent = await client.delete_agent(args.session, args.agent, purge=args.purge)
    if args.output == "table":
        detail = f" ({output.terminal_safe(agent['message'])})" if agent.get("message") else ""
        out.write(f"agent {args.session}/{args.agent} deleted{detail}\n")
    else:
        out.write(output.dump(agent, args.output))
    return EXIT_OK


async def suspend(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Suspend an agent (its data is kept)."""
    agent = await client.suspend_agent(args.session, args.agent)
    if args.output == "table":
        out.write(f"agent {args.session}/{args.agent} {output.describe_status(agent)}\n")
    else:
        out.write(output.dump(agent, args.output))
    return EXIT_OK


async def resume(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout,
                 err: TextIO = sys.stderr) -> int:
    """Resume a suspended agent; with ``--wait``, follow it until ready, failed or the timeout."""
    if not args.wait:
        show_agent(await client.resume_agent(args.session, args.agent), args.output, out)
        return EXIT_OK
    display = display_for(err, plain=getattr(args, "plain", False))
    async with display, StatusWatcher(client, args.session, display) as watcher:
        agent = await client.resume_agent(args.session, args.agent)
        final = await watcher.wait(agent, args.timeout, steps=True)
    show_agent(final, args.output, out)
    return EXIT_OK


async def logs(client: ApiClient, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Print the tail of an agent's output; ``-f`` keeps printing what is added."""
    text = await client.logs(args.session, args.agent, args.tail)
    lines = text.splitlines()
    _write_lines(out, lines)
    while args.follow:
        await asyncio.sleep(args.interval)
        current = (await client.logs(args.session, args.agent, max(args.tail, FOLLOW_WINDOW))).splitlines()
        added = new_lines(lines, current)
        _write_lines(out, added)
        lines = current
    return EXIT_OK


FOLLOW_WINDOW = 1000
"""Lines fetched on each poll of ``logs -f`` (more lines than that in one interval are skipped)."""


def new_lines(before: list[str], after: list[str]) -> list[str]:
    """The lines at the end of ``after`` that were not at the end of ``before``.

    Both are tails of the same growing log. The longest end of ``before`` that
    starts ``after`` is taken to be the same text; what follows is new. When
    nothing overlaps (the log rotated, or grew by more than the window) all of
    ``after`` is new.
    """
    for size in range(min(len(before), len(after)), 0, -1):
        if before[-size:] == after[:size]:
            return after[size:]
    return after


def _write_lines(out: TextIO, lines: list[str]) -> None:
    for line in lines:
        out.write(output.terminal_safe(line) + "\n")
    out.flush()


class StatusWatcher:
    """Follows one session's ``/events`` (opened before the agent is created, so that no
    change is missed) and reports every status an agent goes through."""

    def __init__(self, client: ApiClient, session: str, display: PlainProgress | LiveProgress) -> None:
        self.client = client
        self.session = session
        self.display = display
        self._events = Subscription(client, "/events", {"session": session})

    async def __aenter__(self) -> StatusWatcher:
        await self._events.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._events.__aexit__(*exc)

    async def wait(self, agent: dict[str, Any], timeout: float, steps: bool = False) -> dict[str, Any]:
        """The agent once ready; :class:`AgentFailed` or :class:`TimedOut` with the last reason.
        ``steps``: also say each step of its start as it is reached (``GET .../progress``)."""
        if not steps:
            return await self._wait(agent, timeout)
        progress = asyncio.create_task(self._say_steps(agent["id"]))
        try:
            final = await self._wait(agent, timeout)
            # The progress stream ends after the start's last step, a moment after ready.
            await asyncio.wait([progress], timeout=STEPS_GRACE)
            return final
        finally:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)

    async def _say_steps(self, agent_id: str) -> None:
        """Say each step of the agent's start; quietly nothing when the server has no such route."""
        try:
            async for event in self.client.events(agent_path(self.session, agent_id, "/progress")):
                if event.name == "step":
                    self.display.step(f"{self.session}/{agent_id}", json.loads(event.data))
        except (ClientError, ValueError):
            pass  # an older server, or the stream broke: the status lines still tell

    async def _wait(self, agent: dict[str, Any], timeout: float) -> dict[str, Any]:
        agent_id = agent["id"]
        deadline = time.monotonic() + timeout
        shown = None
        while True:
            line = output.describe_status(agent)
            if line != shown:
                self.display.status(f"{self.session}/{agent_id}", line)
                shown = line
            status = agent.get("status")
            if status == READY:
                return agent
            if status in (FAILED, STOPPED) or agent.get("event") == "deleted":
                raise AgentFailed(f"agent {self.session}/{agent_id} {output.describe_status(agent)}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimedOut(f"agent {self.session}/{agent_id} is not ready after {timeout:g}s; "
                               f"last status: {output.describe_status(agent)}")
            try:
                event = await self._events.next(min(left, POLL_INTERVAL))
            except ClientError:  # the stream broke: polling alone still gets there
                event = None
                await asyncio.sleep(min(left, POLL_INTERVAL))
            if event is not None and time.monotonic() > deadline:
                continue  # an event queued meanwhile came after the deadline: too late to count
            if event is None:
                agent = await self.client.get_agent(self.session, agent_id)
            elif event.name == "status":
                update = json.loads(event.data)
                if update.get("id") == agent_id:
                    agent = update
