"""The k8s client's bound on calls under way at once (``k8s_mode.api.max_in_flight``).

What is counted is the client's own queueing, so the API server is stood in for by an
object with kr8s's ``call_api`` shape that only counts the calls inside it at once; the
calls themselves are proven against the real control plane by the e2e suite."""

from __future__ import annotations

import asyncio
import contextlib

from agentproxy.backends.k8s.client import Client


class CountingApi:
    """Answers every call with ``{}`` after a short pause, and records the most calls at once."""

    def __init__(self) -> None:
        self.now = self.most = 0

    @contextlib.asynccontextmanager
    async def call_api(self, *args, **kwargs):
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.01)
            yield _Answer()
        finally:
            self.now -= 1


class _Answer:
    status_code = 200
    is_error = False
    content = b"{}"

    def json(self):
        return {}


async def test_calls_beyond_the_bound_wait_their_turn():
    api = CountingApi()
    client = Client(api, max_in_flight=3)  # type: ignore[arg-type]  # kr8s's Api in what Client calls of it
    await asyncio.gather(*(client.request("GET", "/api/v1/namespaces/x/configmaps/c") for _ in range(20)))
    assert api.most == 3 and client.calls == 20

