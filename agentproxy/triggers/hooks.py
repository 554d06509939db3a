"""``POST /hooks/{id}``: an inbound webhook starts an agent (or talks to the one it started).

The order of the checks is the contract: an unknown hook is 404; a body past ``server.max_body``
413; a missing or bad signature 401 before the body is even parsed (nothing is recorded but the
refusal); then a delivery seen before is 200 ``{"duplicate": true}``; an event the hook does not
match 200 ``{"matched": false, "reason"}``; more running agents of the hook than its
``max_running`` 429; else the agent is created with the rendered prompt as its first message and
the answer is 202 with the agent (``reused: true`` when the prompt is queued for the agent an
earlier event of the same issue or pull request started: it is sent, in order, once that agent is
resumed if need be and idle).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from ..api.auth import Principal
from ..api.context import ApiContext
from ..api.errors import ApiError
from ..api.model import agent_json
from ..api.params import read_bounded
from ..backends.base import AgentState, AgentStatus, NotFound
from ..backends.suspension import API
from ..launch import AGENTAPI_HOST
from ..teams.http import team_spec
from .config import Hook, SecretMissing
from .dedupe import DeliveryLog, SharedDeliveries
from .hookbook import HookBook
from .matching import Event, agent_id_for, mismatch
from .records import Recent
from .signatures import signature_valid
from .templates import OutputTooLarge, TemplateRefused

log = logging.getLogger("agentproxy.triggers")

TAG = "agentproxy.trigger"
"""The spec tag naming what started an agent: ``hook/ID`` or ``schedule/ID``."""

EVENT_HEADERS = {"github": "X-GitHub-Event", "hmac-sha256": "X-Event-Type"}

RUNNING = (AgentStatus.PENDING, AgentStatus.STARTING, AgentStatus.READY)

REUSE_WAIT = 600.0
"""Seconds a prompt for the issue's agent waits for it to be free (resumed, idle) before it is
given up (and told in the deliveries and the log)."""


def running_of(states: list[AgentState], tag: str) -> int:
    """How many agents tagged ``tag`` run (not suspended, stopped or failed)."""
    return sum(1 for s in states if s.spec.tags.get(TAG) == tag and s.status in RUNNING and not s.suspended)


def principal_for(ctx: ApiContext, owner: str | None) -> Principal:
    """Who a trigger acts as: its owner, in the owner's groups (never an admin: quotas apply)."""
    return Principal(owner, False, ctx.teams.groups_of(owner), key=None)


class HookRoutes:
    """The inbound webhooks of one application."""

    def __init__(self, ctx: ApiContext, hooks: HookBook, deliveries: DeliveryLog, recent: Recent,
                 http: Any, shared: SharedDeliveries | None = None) -> None:
        self.ctx = ctx
        self.hooks = hooks
        self.deliveries = deliveries
        self.shared = shared
        """The delivery ids every replica shares (k8s mode), checked after this replica's own."""
        self.recent = recent
        self.http = http
        """A callable giving the shared :class:`aiohttp.ClientSession` (open while the app runs)."""
        self._in_flight: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.post("/hooks/{hook}", self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        """Check, match and act on one delivery (see the module's text)."""
        hook = await self.hooks.find(request.match_info["hook"])
        if hook is None:
            raise ApiError(404, "no such hook", field="hook")
        started = time.monotonic()
        body = await _body(request, self.ctx.settings.server.max_body)
        try:
            secret = self.hooks.secret(hook)
        except SecretMissing as exc:
            log.warning("hook %s cannot check signatures: %s", hook.id, exc)
            raise ApiError(503, f"hook {hook.id!r} has no secret configured on this proxy", field="hook") from None
        if not signature_valid(hook.scheme, hook.header, secret, body, request.headers):
            self.recent.add("hook", hook.id, status=401, result="bad signature")
            header = "X-Hub-Signature-256" if hook.scheme == "github" else hook.header
            raise ApiError(401, f"{header}: missing or not a valid signature of the body", field=header)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        delivery = request.headers.get(hook.delivery_header) or "sha256:" + hashlib.sha256(body).hexdigest()
        event = Event(request.headers.get(EVENT_HEADERS[hook.scheme]), delivery, payload)
        if not await self._claim(hook, delivery):
            self.recent.add("hook", hook.id, status=200, result="duplicate", delivery=delivery)
            return web.json_response({"hook": hook.id, "delivery": DeliveryLog.normal(delivery), "duplicate": True})
        kept = False
        try:
            data, status = await self._act(hook, event)
            kept = True
            self.recent.add("hook", hook.id, status=status, delivery=delivery, result=data["result"],
                            agent=data.get("id"), seconds=round(time.monotonic() - started, 4))
            return web.json_response(data, status=status)
        except ApiError as exc:
            kept = exc.status < 500 and exc.status != 429  # a refusal that a retry would not change
            self.recent.add("hook", hook.id, status=exc.status, result=exc.message, delivery=delivery)
            raise
        finally:
            if kept:
                self.deliveries.keep_id(hook.id, delivery)
            else:
                self.deliveries.release(hook.id, delivery)
            if self.shared is not None:
                await self._settle(hook, delivery, kept)

    async def _claim(self, hook: Hook, delivery: str) -> bool:
        """True when this replica handles ``delivery`` now: new to it, and (k8s mode) to every replica."""
        if not self.deliveries.claim(hook.id, delivery):
            return False
        if self.shared is None:
            return True
        try:
            mine = await self.shared.claim(hook.id, DeliveryLog.normal(delivery))
        except BaseException:
            self.deliveries.release(hook.id, delivery)
            raise
        if not mine:
            self.deliveries.release(hook.id, delivery)
        return mine

    async def _settle(self, hook: Hook, delivery: str, kept: bool) -> None:
        """Tell the other replicas the delivery was handled (or may be tried again)."""
        assert self.shared is not None
        try:
            if kept:
                await asyncio.shield(self.shared.keep(hook.id, DeliveryLog.normal(delivery)))
            else:
                await asyncio.shield(self.shared.release(hook.id, DeliveryLog.normal(delivery)))
        except Exception as exc:  # noqa: BLE001 - the answer stands; an open claim is taken over once stale
            log.warning("hook %s: the shared record of delivery %s was not updated: %s", hook.id,
                        DeliveryLog.normal(delivery), type(exc).__name__)

    async def _act(self, hook: Hook, event: Event) -> tuple[dict[str, Any], int]:
        reason = mismatch(hook, event)
        if reason is not None:
            return {"hook": hook.id, "matched": False, "result": "not matched", "reason": reason}, 200
        try:
            prompt = hook.run.prompt.render(event.context())
        except (TemplateRefused, OutputTooLarge) as exc:
            raise ApiError(422, f"triggers.hooks.{hook.id}.prompt: {exc}", field="prompt") from None
        agent_id = agent_id_for(hook, event)
        if hook.reuse == "issue" and event.number is not None:
            try:
                current = await self.ctx.backend.get(hook.run.session, agent_id)
            except NotFound:
                current = None
            if current is not None:
                if current.status is AgentStatus.FAILED:
                    raise ApiError(409, f"agent {current.id!r} of this issue failed ({current.reason}); delete it "
                                        "to start the issue's agent again", code="conflict", field="reuse")
                self._queue(hook, current, prompt, event.delivery)
                return {**agent_json(current), "hook": hook.id, "reused": True, "result": "prompt queued"}, 202
        tag = f"hook/{hook.id}"
        if hook.max_running:
            running = running_of(await self.ctx.backend.list(), tag) + self._in_flight.get(hook.id, 0)
            if running >= hook.max_running:
                raise ApiError(429, f"hook {hook.id!r} has {running} running agents, its max_running",
                               code="too_many_agents", field="max_running", headers={"Retry-After": "30"})
        principal = principal_for(self.ctx, hook.run.owner)
        spec = team_spec(self.ctx.teams, self.ctx.settings, principal, hook.run.session,
                         {"id": agent_id, "agent": hook.run.agent, "message": prompt, "profile": hook.run.profile})
        spec = dataclasses.replace(spec, tags={**spec.tags, TAG: tag})
        self._in_flight[hook.id] = self._in_flight.get(hook.id, 0) + 1
        try:
            async with self.ctx.quotas.admit(principal, spec, new_agent=True, starts=True):
                state = await asyncio.shield(self.ctx.backend.create(spec, any_session=True))
        finally:
            self._in_flight[hook.id] -= 1
        return {**agent_json(state), "hook": hook.id, "reused": False, "result": "created"}, 202

    def _queue(self, hook: Hook, state: AgentState, prompt: str, delivery: str | None) -> None:
        """Send ``prompt`` to the issue's agent in the background, after the prompts queued before it
        (a sender waits seconds at most for its answer; an agent may take minutes to be free)."""
        lock = self._locks.setdefault(state.id, asyncio.Lock())
        task = asyncio.create_task(self._send_when_free(hook, state, prompt, delivery, lock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Give up the prompts not sent yet (the proxy stops)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _send_when_free(self, hook: Hook, state: AgentState, prompt: str, delivery: str | None,
                              lock: asyncio.Lock) -> None:
        async with lock:
            try:
                await self._awake_and_send(hook, state, prompt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - told in the deliveries and the log, not to the sender (gone)
                log.warning("hook %s: the prompt of delivery %s was not sent to agent %s: %s", hook.id,
                            DeliveryLog.normal(delivery or ""), state.id, exc)
                self.recent.add("hook", hook.id, status=None, delivery=delivery, agent=state.id,
                                result=f"prompt not sent: {exc}"[:300])
            else:
                self.recent.add("hook", hook.id, status=None, delivery=delivery, agent=state.id, result="prompt sent")

    async def _awake_and_send(self, hook: Hook, state: AgentState, prompt: str) -> None:
        """Resume the agent if it is suspended (as its owner, within the owner's quotas), wait until
        it is ready and agentapi is idle (it takes user messages only then), and send."""
        backend = self.ctx.backend
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REUSE_WAIT
        state = await backend.get(state.session, state.id)
        if state.suspended or state.status in (AgentStatus.SUSPENDED, AgentStatus.STOPPED):
            async with self.ctx.quotas.admit(principal_for(self.ctx, hook.run.owner), state.spec, new_agent=False,
                                             starts=True):
                await asyncio.shield(backend.resume(state.session, state.id, API))
        while True:
            state = await backend.wait_ready(state.session, state.id, max(0.1, deadline - loop.time()))
            if state.status is AgentStatus.READY and state.upstream:
                answer = await self._post(state, prompt)
                if answer is None:
                    backend.answered(state.id)
                    return
            else:
                answer = f"the agent is {state.status.value}"
            if loop.time() > deadline:
                raise TimeoutError(f"{answer} after {REUSE_WAIT:g} s")
            await asyncio.sleep(1.0)

    async def _post(self, state: AgentState, prompt: str) -> str | None:
        """Post the message; None when agentapi took it, else why not (it takes one only when idle)."""
        try:
            async with self.http().post(f"{state.upstream}/message", json={"content": prompt, "type": "user"},
                                        headers={"Host": AGENTAPI_HOST},
                                        timeout=aiohttp.ClientTimeout(total=30)) as reply:
                await reply.read()
                return None if reply.status < 300 else f"agentapi answered {reply.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"{type(exc).__name__}"


async def _body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise ApiError(413, f"the body has {length} bytes; at most {limit} are accepted")
    return await read_bounded(request, limit)
