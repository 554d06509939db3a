"""The k8s client's bound on calls under way at once (``k8s_mode.api.max_in_flight``).

What is counted is the client's own queueing, so the API server is stood in for by a transport
(:class:`~agentproxy.backends.k8s.transport.Transport`) that only counts the calls inside it at
once; the calls themselves are proven against a real HTTP server (``test_transport.py``) and the
real control plane by the e2e suite."""

from __future__ import annotations

import asyncio

from agentproxy.backends.k8s.client import Client


class CountingTransport:
    """Answers every call with ``{}`` after a short pause, and records the most calls at once."""

    def __init__(self) -> None:
        self.now = self.most = 0

    async def request(self, *args, **kwargs) -> tuple[int, bytes]:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0.01)
            return 200, b"{}"
        finally:
            self.now -= 1


async def test_calls_beyond_the_bound_wait_their_turn():
    transport = CountingTransport()
    client = Client(None, max_in_flight=3, transport=transport)  # type: ignore[arg-type]  # no kr8s Api: the transport answers
    await asyncio.gather(*(client.request("GET", "/api/v1/namespaces/x/configmaps/c") for _ in range(20)))
    assert transport.most == 3 and client.calls == 20

