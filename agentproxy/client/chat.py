"""``agentproxy chat SESSION AGENT``: talk to an agent through the proxy route.

The agent's own ``/events`` (agentapi's Server-Sent Events, through
``/sessions/S/agents/A/api/events``) bring its messages as they grow
(``message_update``) and its status (``status_change``: ``running`` while it
works, ``stable`` when it can take a message). A message is sent with
``POST .../api/message`` only while the agent is stable; lines typed meanwhile
wait their turn.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import signal
import sys
import time
from collections import deque
from typing import Any, TextIO

from .errors import EXIT_OK, ClientError, ServerError, TimedOut
from .http import ApiClient, Subscription, agent_path
from .output import terminal_safe
from .transcript import AGENT, USER, Printer, Transcript

STABLE, RUNNING = "stable", "running"
RETRY_INTERVAL = 2.0
"""Seconds between attempts while the agent is not ready or the stream broke."""
NOT_READY = "agent_not_ready"


class Agent:
    """The proxy routes of one agent's own API."""

    def __init__(self, client: ApiClient, session: str, agent: str) -> None:
        self.client, self.session, self.agent = client, session, agent
        self.name = f"{session}/{agent}"

    def events(self) -> Subscription:
        """Its event stream (not yet open)."""
        return Subscription(self.client, agent_path(self.session, self.agent, "/api/events"))

    async def send(self, text: str) -> None:
        """Send a user message (agentapi answers once the agent has started on it)."""
        await self.client.request("POST", agent_path(self.session, self.agent, "/api/message"),
                                  json_body={"content": text, "type": "user"}, timeout=120)

    async def status(self) -> str:
        """``running`` or ``stable``."""
        return (await self.client.request("GET", agent_path(self.session, self.agent, "/api/status")))["status"]


async def _open(agent: Agent, deadline: float) -> Subscription:
    """The agent's open event stream, waiting (until ``deadline``) while it is not ready."""
    while True:
        events = agent.events()
        try:
            return await events.__aenter__()
        except ServerError as exc:
            if exc.code != NOT_READY or time.monotonic() + RETRY_INTERVAL > deadline:
                raise
        await asyncio.sleep(RETRY_INTERVAL)


async def send_one(client: ApiClient, session: str, agent_id: str, text: str, timeout: float,
                   out: TextIO = sys.stdout) -> int:
    """Send ``text`` once the agent is stable, print its reply once it is stable again."""
    agent = Agent(client, session, agent_id)
    deadline = time.monotonic() + timeout
    transcript = Transcript()

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOut(f"no complete reply from {agent.name} within {timeout:g}s")
        return remaining

    events = await _open(agent, deadline)
    try:
        status = None
        while status != STABLE:  # agentapi replays the conversation, then says its status
            event = await events.next(left())
            if event is not None:
                status = _take(event, transcript) or status
        before = transcript.last_id
        await agent.send(text)
        seen_running = False
        while True:
            event = await events.next(min(left(), 1.0))
            if event is None:  # quiet: ask, in case a status change went by unseen
                if await agent.status() == STABLE and _replied(transcript, before):
                    break
                continue
            status = _take(event, transcript)
            seen_running = seen_running or status == RUNNING
            if status == STABLE and (seen_running or _replied(transcript, before)):
                break
    finally:
        await events.__aexit__(None, None, None)
    reply = [m.text for m in transcript.after(before, AGENT) if m.text]
    out.write("\n".join(reply) + "\n" if reply else "")
    return EXIT_OK


def _take(event: Any, transcript: Transcript) -> str | None:
    """Apply one agent event; its status if it is a status change."""
    if event.name == "message_update":
        transcript.apply_event(event.data)
    elif event.name == "status_change":
        return json.loads(event.data).get("status")
    return None


def _replied(transcript: Transcript, before: int) -> bool:
    users = transcript.after(before, USER)
    return bool(users) and bool(transcript.after(users[0].id, AGENT))


class Chat:
    """The interactive chat: one inbox for everything that happens (agent events, typed lines,
    sends finishing, Ctrl-C), handled in order by :meth:`run`."""

    def __init__(self, client: ApiClient, session: str, agent_id: str, stdin_fd: int, out: TextIO) -> None:
        self.agent = Agent(client, session, agent_id)
        self.server = client.server
        self.stdin_fd = stdin_fd
        self.printer = Printer(out)
        self.transcript = Transcript()
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.queued: deque[str] = deque()
        self.sent: deque[str] = deque()  # sent by us, not yet seen in the transcript
        self.status: str | None = None
        self.sending = False
        self.input_done = False
        self.waiting_for: str | None = None

    async def run(self) -> int:
        """Chat until Ctrl-C, or end of input once everything typed is answered."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.inbox.put_nowait, ("quit", None))
        reader = _LineReader(self.stdin_fd, self.inbox)
        pump = asyncio.create_task(self._pump())
        self.printer.line(f"Chat with {self.agent.name} at {self.server}. Enter sends a message; "
                          "Ctrl-C leaves.")
        try:
            reader.start(loop)
            while True:
                kind, payload = await self.inbox.get()
                if kind == "quit":
                    break
                if kind == "fatal":
                    raise payload
                getattr(self, f"_on_{kind}")(payload)
                if self.input_done and not self.queued and not self.sending and self.status == STABLE:
                    break
        finally:
            reader.stop(loop)
            loop.remove_signal_handler(signal.SIGINT)
            pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                pass
            self.printer.end_block()
        return EXIT_OK

    async def _pump(self) -> None:
        """Move the agent's events into the inbox; reconnect while it is not ready or the stream breaks."""
        while True:
            try:
                async with self.agent.events() as events:
                    self.inbox.put_nowait(("connected", None))
                    while True:
                        self.inbox.put_nowait(("event", await events.next()))
            except ServerError as exc:
                if exc.code != NOT_READY and exc.status != 502:
                    self.inbox.put_nowait(("fatal", exc))
                    return
                self.inbox.put_nowait(("waiting", exc.server_message))
            except ClientError as exc:
                self.inbox.put_nowait(("waiting", exc.message))
            await asyncio.sleep(RETRY_INTERVAL)

    def _on_connected(self, _: Any) -> None:
        self.status = None
        self.waiting_for = None

    def _on_waiting(self, reason: str) -> None:
        self.status = None
        if reason != self.waiting_for:  # said once, not at every retry
            self.waiting_for = reason
            self.printer.line(f"[waiting for the agent: {terminal_safe(reason)}]")

    def _on_event(self, event: Any) -> None:
        if event is None:
            return
        if event.name == "message_update":
            change = self.transcript.apply_event(event.data)
            if change.message.role == USER and change.kind == "new" and change.message.text in self.sent:
                self.sent.remove(change.message.text)  # what we typed is on the screen already
                return
            self.printer.show(change)
        elif event.name == "status_change":
            status = json.loads(event.data).get("status")
            if status != self.status:
                self.status = status
                self.printer.line(f"[agent {status}]")
                if status == STABLE:
                    self._next()
        elif event.name == "agent_error":
            self.printer.line(f"[agent error: {event.data}]")

    def _on_line(self, text: str) -> None:
        self.printer.at_line_start = True  # the terminal echoed the Enter
        if text.strip():
            self.queued.append(text)
            if self.status != STABLE or self.sending:
                self.printer.line("[queued until the agent is stable]")
        self._next()

    def _on_eof(self, _: Any) -> None:
        self.input_done = True

    def _on_sent(self, error: ClientError | None) -> None:
        self.sending = False
        if error is not None:
            self.printer.line(f"[not sent: {error.message}]")
            self._next()

    def _next(self) -> None:
        """Send the next queued line if the agent can take it; else show the prompt."""
        if self.sending or self.status != STABLE:
            return
        if not self.queued:
            if not self.input_done:
                self.printer.write("> " if self.printer.at_line_start else "\n> ")
            return
        text = self.queued.popleft()
        self.sending = True
        self.sent.append(text)
        asyncio.get_running_loop().create_task(self._send(text))

    async def _send(self, text: str) -> None:
        try:
            await self.agent.send(text)
        except ClientError as exc:
            self.inbox.put_nowait(("sent", exc))
        else:
            self.inbox.put_nowait(("sent", None))


class _LineReader:
    """Typed lines from a file descriptor into the inbox, read as they come (a terminal in its
    usual line mode hands over a line at a time, with its own editing)."""

    def __init__(self, fd: int, inbox: asyncio.Queue[tuple[str, Any]]) -> None:
        self.fd = fd
        self.inbox = inbox
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""
        self.watching = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            loop.add_reader(self.fd, self._readable)
            self.watching = True
        except (PermissionError, OSError):  # a regular file cannot be watched: it is all there
            while not self._readable():
                pass

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.watching:
            loop.remove_reader(self.fd)
            self.watching = False

    def _readable(self) -> bool:
        """Read what is there; True at end of input."""
        data = os.read(self.fd, 65536)
        text = self.partial + self.decoder.decode(data, final=not data)
        *lines, self.partial = text.split("\n")
        for line in lines:
            self.inbox.put_nowait(("line", line.rstrip("\r")))
        if not data:
            if self.partial:
                self.inbox.put_nowait(("line", self.partial))
                self.partial = ""
            self.inbox.put_nowait(("eof", None))
            if self.watching:
                asyncio.get_running_loop().remove_reader(self.fd)
                self.watching = False
            return True
        return False


async def interactive(client: ApiClient, session: str, agent_id: str, out: TextIO = sys.stdout) -> int:
    """The interactive chat on this process's standard input and output."""
    return await Chat(client, session, agent_id, sys.stdin.fileno(), out).run()
