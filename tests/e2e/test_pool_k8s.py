"""Warm pools in k8s mode through `agentproxy serve`, against the real API server and kwok.

Members are agents of the cluster labelled for their pool; a create that names no id takes one
with one conditional write of its ConfigMap. Two replicas serving twenty creates at once hand
out each member once: five creates are warm, fifteen cold, and the pool is whole again after.
A claimed member is bound with its owner's variables and first message: its container runs as
a local process (``standin.py``: the real launcher waiting on the pod's IP for its binding,
then the real agentapi); started again after the claim, it starts bound at once. A claimed
agent's progress is its claim's steps (claimed, bound, ...), not its member's start replayed.
"""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import psutil
import pytest

from agentproxy.pools import LABEL_POOL, LABEL_SHAPE
from tests.conversation import agent_said, exchanges, wait_answering

from .kube import get, request, wait_for
from .served import Served, counted
from .standin import ContainerStandIn


def pool_of(size: int) -> str:
    return f"pools=[{{name: echo, size: {size}, agent: echo}}]"


async def member_ids(api, namespace: str) -> set[str]:
    """The members in the cluster: ConfigMaps labelled for a pool (a claim removes the label)."""
    _, found = await request(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps",
                             params={"labelSelector": LABEL_POOL})
    return {cm["metadata"]["labels"]["agentproxy.io/agent-id"] for cm in found["items"]
            if not cm["metadata"].get("deletionTimestamp")}


async def ready_members(server: Served) -> float:
    return counted(await server.metrics(), "agentproxy_pool_members", pool="echo", state="ready")


async def whole(api, namespace: str, size: int, *servers: Served) -> set[str]:
    """Wait until the cluster holds exactly ``size`` members and every replica sees them ready."""
    async def check():
        ids = await member_ids(api, namespace)
        ready = [await ready_members(s) for s in servers]
        return ids if len(ids) == size and all(r == size for r in ready) else None
    return await wait_for(check, f"the pool to hold {size} ready members", timeout=120)


async def create(server: Served, session: str, body: dict | None = None) -> dict:
    status, agent, _ = await server.call("POST", f"/sessions/{session}/agents", body or {})
    assert status == 201, agent
    return agent


async def test_twenty_creates_on_two_replicas_take_each_member_once(servers, api, namespace):
    a = await servers.start(pool_of(5))
    b = await servers.start(pool_of(5))
    before = await whole(api, namespace, 5, a, b)
    # Members are no one's agents: not listed, and no route reaches them.
    for server in (a, b):
        status, listed, _ = await server.call("GET", "/agents")
        assert status == 200 and listed["agents"] == [], listed
    member = next(iter(before))
    assert (await a.call("GET", f"/sessions/agentproxy-pool/agents/{member}"))[0] == 404

    agents = await asyncio.gather(*(create(a if i % 2 else b, "burst") for i in range(20)))
    ids = [agent["id"] for agent in agents]
    assert len(set(ids)) == 20  # no member handed out twice
    warm = [agent for agent in agents if agent["details"]["start"] == "warm"]
    cold = [agent for agent in agents if agent["details"]["start"] == "cold"]
    assert len(warm) == 5 and len(cold) == 15, [(x["id"], x["details"]["start"]) for x in agents]
    assert {agent["id"] for agent in warm} == before
    assert all(agent["details"]["pool"] == "echo" for agent in warm)
    samples = [await s.metrics() for s in (a, b)]
    assert sum(counted(m, "agentproxy_pool_claims_total") for m in samples) == 5

    # Each claimed member is its owner's agent: its ConfigMap lost the pool's labels.
    for agent in warm:
        configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-{agent['id']}-config")
        labels = configmap["metadata"]["labels"]
        assert labels["agentproxy.io/session"] == "burst" and LABEL_POOL not in labels and LABEL_SHAPE not in labels
        assert configmap["data"]["AGENTPROXY_BOUND"] == "1"

    # Both replicas list all twenty, and the pool is whole again with new members.
    for server in (a, b):
        async def listed(server=server):
            status, body, _ = await server.call("GET", "/agents")
            return status == 200 and sorted(x["id"] for x in body["agents"]) == sorted(ids)
        await wait_for(listed, "every replica to list the twenty agents")
    after = await whole(api, namespace, 5, a, b)
    assert not after & set(ids)

    # Every warm agent becomes ready (kwok marks its pod Ready; nothing of it restarted).
    async def all_ready():
        states = [await a.agent("burst", agent["id"]) for agent in warm]
        return all(s and s["status"] == "ready" for s in states)
    await wait_for(all_ready, "the warm agents to be ready")

    # Its start is its claim's steps, on both replicas; the member's own start is not replayed.
    # (kwok runs no launcher: the binding reached none, so `bound` is implied by the pod Ready.)
    for agent in warm:
        for server in (a, b):
            steps = await steps_of(server, "burst", agent["id"])
            assert [s["step"] for s in steps] == ["claimed", "bound", "agentapi_answering", "ready"], steps
            assert "echo" in steps[0]["message"], steps


async def test_a_claimed_member_is_bound_with_its_owners_variables_and_first_message(servers, api, namespace,
                                                                                     pod_cidr, tmp_path):
    if pod_cidr is None or not pod_cidr.is_loopback:
        pytest.skip("needs pods with loopback IPs, so that a local process can stand in for the container")
    server = await servers.start(pool_of(1))
    [member] = await whole(api, namespace, 1, server)
    volumes = tmp_path / "volumes"
    secret = await get(api, f"/api/v1/namespaces/{namespace}/secrets/agent-{member}-binding")
    token = base64.b64decode(secret["data"]["token"]).decode()
    configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-{member}-config")
    assert token not in str(configmap)  # the token is in its Secret alone

    waiting = await ContainerStandIn.of_pod(api, namespace, f"agent-{member}-0", volumes)
    with waiting as container:
        await wait_for(lambda: asyncio.to_thread(lambda: "waiting for a binding" in container.output()),
                       "the member's launcher to wait for its binding")
        agent = await create(server, "owners", {"env": {"GREETING": "hi there"}, "message": "hello"})
        assert agent["id"] == member and agent["details"]["start"] == "warm", agent
        route = f"{server.base}/sessions/owners/agents/{member}/api"
        await wait_answering(server.http, route)
        said = await agent_said(server.http, route, "echo: hello")
        assert exchanges(said) == [("user", "hello"), ("agent", "echo: hello")], container.output()
        env = _child_environment(container)
        assert env["GREETING"] == "hi there" and env["AGENTPROXY_SESSION"] == "owners"
        assert env["AGENTPROXY_AGENT_ID"] == member and "AGENTPROXY_BINDING_TOKEN" not in env
        assert token not in container.output() and token not in server.output()
        # The claim's own steps: the launcher took the binding, then agentapi answered.
        steps = await steps_of(server, "owners", member)
        assert [s["step"] for s in steps][:2] == ["claimed", "bound"] and steps[-1]["step"] == "ready", steps
        assert "took the binding" in steps[1]["message"], steps
        assert not {"applied", "scheduled", "container_started"} & {s["step"] for s in steps}, steps
        # The token binds nothing any more: its Secret goes.
        await wait_for(lambda: _gone(api, f"/api/v1/namespaces/{namespace}/secrets/agent-{member}-binding"),
                       "the binding Secret to be deleted")

    # The container starts again (same pod, as after a crash): bound at once, with the owner's
    # variables from its ConfigMap, and its conversation from its volume.
    again = await ContainerStandIn.of_pod(api, namespace, f"agent-{member}-0", volumes)
    with again as container:
        await wait_answering(server.http, route)
        said = await agent_said(server.http, route, "echo: hello")
        assert exchanges(said)[:2] == [("user", "hello"), ("agent", "echo: hello")], container.output()
        assert "bound before this start" in container.output()
        env = _child_environment(container)
        assert env["GREETING"] == "hi there" and env["AGENTPROXY_SESSION"] == "owners"
    assert (await server.agent("owners", member))["details"]["start"] == "warm"


async def steps_of(server: Served, session: str, agent_id: str, timeout: float = 120) -> list[dict]:
    """Every step of the agent's start, read until its stream ends (a stream that does not end
    fails with the steps it sent and the agent's state)."""
    steps: list[dict] = []

    async def read() -> None:
        async with server.http.get(f"{server.base}/sessions/{session}/agents/{agent_id}/progress",
                                   timeout=aiohttp.ClientTimeout(total=None)) as resp:
            assert resp.status == 200, await resp.text()
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    steps.append(json.loads(line[len("data: "):]))
    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        state = await server.agent(session, agent_id)
        raise AssertionError(f"the progress of {agent_id} on {server.base} did not end in {timeout:.0f} s: "
                             f"steps {steps}, state {state}") from None
    return steps


async def _gone(api, path: str) -> bool:
    return await get(api, path) is None


def _child_environment(container: ContainerStandIn) -> dict[str, str]:
    """The environment agentapi was started with: the launcher's child's."""
    assert container.proc is not None
    children = psutil.Process(container.proc.pid).children()
    assert children, container.output()
    return children[0].environ()


async def test_members_outlive_a_restart_a_new_shape_replaces_them_and_a_removed_pool_drains(servers, api,
                                                                                            namespace):
    server = await servers.start(pool_of(2))
    first = await whole(api, namespace, 2, server)
    await server.stop()
    # The proxy keeps nothing of its own: started again, it finds the same members by their labels.
    await server.start()
    assert await whole(api, namespace, 2, server) == first
    await server.stop()

    # Another shape (a create of the old one would not be served): new members replace the old.
    reshaped = await servers.start("pools=[{name: echo, size: 2, agent: echo, resources: {cpu_limit: 400m}}]")
    async def replaced():  # the old members count as ready until they are removed
        ids = await whole(api, namespace, 2, reshaped)
        return ids if not ids & first else None
    second = await wait_for(replaced, "new members to replace the old", timeout=120)
    for member in first:
        async def gone(member=member):
            return await get(api, f"/api/v1/namespaces/{namespace}/statefulsets/agent-{member}") is None
        await wait_for(gone, f"the old member {member}'s StatefulSet to go")
    agent = await create(reshaped, "s1")
    assert agent["details"]["start"] == "cold"  # not of the pool's shape
    agent = await create(reshaped, "s1", {"resources": {"cpu_limit": "400m"}})
    assert agent["details"]["start"] == "warm" and agent["id"] in second
    await reshaped.stop()

    # No pools any more: the members go, the agent claimed from one stays.
    drained = await servers.start()
    await wait_for(lambda: _no_members(api, namespace), "the members to be removed", timeout=120)
    assert (await drained.agent("s1", agent["id"]))["details"]["start"] == "warm"


async def _no_members(api, namespace: str) -> bool:
    return not await member_ids(api, namespace)
