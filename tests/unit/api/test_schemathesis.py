"""Property-based checks of the live API against its own OpenAPI document.

Schemathesis generates requests for every documented operation (the event
stream excepted: it never ends) and sends them to the API served on loopback,
over an in-memory backend whose agents point at the imitation agentapi. Every
answer must be documented: no 5xx, a documented status, content type, headers
and body schema; and every request the document calls valid must be accepted
(the document states every rule the server enforces). The number of examples is
kept small so that the suite stays fast.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentproxy.api import create_app
from agentproxy.api.openapi import openapi_document
from agentproxy.backends.base import Rejected
from agentproxy.render import RenderError, check_no_secrets
from agentproxy.settings import Settings, load_settings

from .memory_backend import MemoryBackend
from .upstream import ImitationAgent

EXAMPLES_PER_OPERATION = 15
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, positive_data_acceptance]

# /hooks/waiting takes only a pod's token the API server vouches for: tests/e2e/test_waiting_k8s.py.
# PUT /hooks/{hook}: a hook's prompt and match.when must be Jinja2 templates that compile in the
# sandbox, a rule JSON Schema cannot state; tests/unit/triggers/test_hooks_api.py checks its answers.
schema = schemathesis.openapi.from_dict(openapi_document(auth=False)).exclude(path="/events") \
    .exclude(path="/hooks/waiting").exclude(method="PUT", path="/hooks/{hook}")

# Other limits, and k8s mode's refusal of secret-looking environment names.
TIGHT = load_settings(overrides=[
    "k8s_mode.enabled=true", "k8s_mode.resources.cpu_request=250m", "k8s_mode.resources.cpu_limit=2",
    "k8s_mode.resources.memory_request=1Gi", "k8s_mode.resources.memory_limit=1500Mi",
    "k8s_mode.resources.storage_size=20G"], environ={}).settings
tight_schema = schemathesis.openapi.from_dict(openapi_document(auth=False, settings=TIGHT, secrets_refused=True)) \
    .include(method="POST", path="/sessions/{session}/agents")


class SecretCheckingBackend(MemoryBackend):
    """Refuses what k8s mode's renderer refuses (the same check), as the k8s backend does with 422."""

    async def _prepare(self, spec):
        if spec is not None:
            try:
                check_no_secrets(spec)
            except RenderError as exc:
                raise Rejected(str(exc), field=exc.field) from None
        return await super()._prepare(spec)


class LiveServers:
    """The imitation agentapi and the API, served on 127.0.0.1 from an event loop in a thread."""

    def __init__(self, settings: Settings | None = None, backend_class: type = MemoryBackend) -> None:
        self.settings = settings or Settings()
        self.backend_class = backend_class
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runners: list[web.AppRunner] = []

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return runner.addresses[0][1]

    async def _start(self) -> str:
        upstream_port = await self._serve(ImitationAgent().app())
        backend = self.backend_class(upstream=f"http://127.0.0.1:{upstream_port}")
        api_port = await self._serve(create_app(self.settings, backend))
        return f"http://127.0.0.1:{api_port}"

    def start(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in reversed(self.runners):
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def live_api() -> Iterator[str]:
    servers = LiveServers()
    try:
        yield servers.start()
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def tight_api() -> Iterator[str]:
    servers = LiveServers(TIGHT, SecretCheckingBackend)
    try:
        yield servers.start()
    finally:
        servers.stop()


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_the_live_api_matches_its_openapi_document(case, live_api):
    case.call_and_validate(base_url=live_api, checks=CHECKS, timeout=10)


@tight_schema.parametrize()
@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_creates_under_other_limits_and_k8s_rules_match_the_document(case, tight_api):
    case.call_and_validate(base_url=tight_api, checks=CHECKS, timeout=10)
