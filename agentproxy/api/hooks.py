"""``POST /hooks/waiting``: what the hooks of an agent in a pod report (k8s mode).

A Claude agent's hooks cannot leave their file where the proxy reads it when the agent
runs in a pod; they send it here instead (see :mod:`agentproxy.waiting`): ``{"question":
TEXT}`` when the agent asks its user for a permission, ``{"question": null}`` when it no
longer waits. The request carries no API key: it is signed by the pod's own ServiceAccount
token (``Authorization: Bearer``), and the backend learns from it which pod, and so which
agent, sent it (see :mod:`agentproxy.backends.k8s.questions`). The answer is the agent's
shown status and question; a refused token is 401 or 403, and a proxy that takes no reports
(local mode, or no ``k8s_mode.waiting_url``) answers 404.
"""

from __future__ import annotations

from aiohttp import web

from ..waiting import REPORT_PATH, parse_report
from . import params
from .auth import presented_key
from .context import ApiContext
from .errors import ApiError

MAX_REPORT = 8192
"""Bytes of a report's body at most (a question is at most 2000 characters)."""


class HookRoutes:
    """The reports of agents' hooks."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        """The route table."""
        return [web.post(REPORT_PATH, self.report)]

    async def report(self, request: web.Request) -> web.Response:
        """Take one report: the token says which agent, the body what it asks."""
        token = presented_key(request.headers.get("Authorization"), None)
        if token is None:
            raise ApiError(401, "the pod's ServiceAccount token is required (Authorization: Bearer TOKEN)",
                           headers={"WWW-Authenticate": 'Bearer realm="agentproxy"'})
        body = await params.json_object(request, MAX_REPORT)
        try:
            question = parse_report(body)
        except ValueError as exc:
            raise ApiError(422, str(exc), field="question") from None
        state = await self.ctx.backend.report_question(token, question)
        return web.json_response({"id": state.id, "session": state.session, "status": str(state.shown_status),
                                  "question": state.question})
