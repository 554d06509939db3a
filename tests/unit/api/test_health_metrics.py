"""Probes and Prometheus metrics."""

from __future__ import annotations

from agentproxy.backends.base import AgentStatus

from .memory_backend import MemoryBackend
from .support import error_of, labels, scrape


class HangingBackend(MemoryBackend):
    async def healthy(self) -> bool:
        raise ConnectionError("API server is down")


async def test_healthz_and_readyz(api, backend: MemoryBackend, make_api):
    assert await (await api.get("/healthz")).json() == {"status": "ok"}
    assert await (await api.get("/readyz")).json() == {"status": "ready"}
    backend.is_healthy = False
    response = await api.get("/readyz")
    error = await error_of(response, 503)
    assert error["code"] == "unavailable" and "Retry-After" in response.headers
    failing = await make_api(backend_=HangingBackend())
    await error_of(await failing.get("/readyz"), 503)


async def test_metrics_count_requests_by_route_template_and_status(api):
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    await api.get("/sessions/s1/agents/a1")
    await api.get("/sessions/s1/agents/zz")
    await api.get("/no/such/route")
    samples = await scrape(api)
    route = "/sessions/{session}/agents/{agent}"
    assert samples[("agentproxy_http_requests_total", labels(method="GET", route=route, status="200"))] == 1
    assert samples[("agentproxy_http_requests_total", labels(method="GET", route=route, status="404"))] == 1
    assert samples[("agentproxy_http_requests_total",
                    labels(method="POST", route="/sessions/{session}/agents", status="201"))] == 1
    assert samples[("agentproxy_http_requests_total", labels(method="GET", route="unmatched", status="404"))] == 1
    assert samples[("agentproxy_http_request_duration_seconds_count",
                    labels(method="GET", route=route, status="200"))] == 1


async def test_agents_by_status_are_counted_at_scrape_time(api, backend: MemoryBackend):
    for agent_id in ("a1", "a2", "a3"):
        await api.post("/sessions/s1/agents", json={"id": agent_id})
    backend.set_state("s1", "a3", status=AgentStatus.FAILED)
    samples = await scrape(api)
    assert samples[("agentproxy_agents", labels(status="ready"))] == 2
    assert samples[("agentproxy_agents", labels(status="failed"))] == 1
    assert samples[("agentproxy_agents", labels(status="pending"))] == 0
    await api.delete("/sessions/s1/agents/a1")
    assert (await scrape(api))[("agentproxy_agents", labels(status="ready"))] == 1


async def test_proxied_bytes_are_counted_both_ways(api):
    await api.post("/sessions/s1/agents", json={"id": "a1"})
    body = b'{"content": "hello", "type": "user"}'
    response = await api.post("/sessions/s1/agents/a1/api/message", data=body,
                              headers={"Content-Type": "application/json"})
    answer = await response.read()
    samples = await scrape(api)
    assert samples[("agentproxy_proxy_bytes_total", labels(direction="in"))] == len(body)
    assert samples[("agentproxy_proxy_bytes_total", labels(direction="out"))] == len(answer)
    route = "/sessions/{session}/agents/{agent}/api/{path}"
    assert samples[("agentproxy_http_requests_total", labels(method="POST", route=route, status="200"))] == 1
