"""Warm pools in k8s mode when things go wrong, against the real API server and kwok.

- A claim whose write gets no answer (it may or may not have been applied) never leaves a
  second agent: the proxy reads the member back and uses it when its claim is there, takes
  another member when it is not, and removes a member its claim reached after the create went
  on without it. The API server answers every request, so the lost answer is imitated
  (:class:`LostAnswers`: the real client, which drops chosen answers and says it timed out).
- Team quotas count a claimed member once, on every replica.
- A member whose launcher cannot be reached still becomes its owner's agent, bound by its
  ConfigMap; its token goes (so its launcher stops waiting) and the pool is refilled.
- Two replicas take the same member at once: the claim that comes second never removes the
  first's agent (its token gone, it looks half-made), and follows that agent's start.
- A member half-made by a crash (no token Secret; a StatefulSet without its ConfigMap) is
  replaced, and a create is served cold or by another member meanwhile.
- The replica that refills dies: another takes the refill lease over and refills.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from agentproxy import naming
from agentproxy.backends.base import Unavailable
from agentproxy.backends.k8s.backend import K8sBackend
from agentproxy.backends.k8s.client import Client
from agentproxy.backends.k8s.kinds import CONFIGMAP
from agentproxy.backends.k8s.ledger import KEY, LEDGER_NAME
from agentproxy.backends.k8s.poollease import HOLDER_ANNOTATION, LEASE_NAME
from agentproxy.backends.k8s.poolmembers import CLAIM_ANNOTATION
from agentproxy.pools import LABEL_POOL
from agentproxy.spec import build_spec

from .agents import settings_for
from .kube import get, request, wait_for
from .served import Served, counted

POOL = "pools=[{name: echo, size: 2, agent: echo}]"


class LostAnswers(Client):
    """The real client, except that the answers of chosen claims are lost. Imitated, because
    the API server answers every request: each of :attr:`claims` is the fate of the next claim,
    ``applied`` (the write was applied, its answer lost) or ``unsent`` (lost before the server
    got it); either way the caller gets the timeout it would get. :attr:`silent_reads` reads
    of a member whose claim's answer was lost get no answer either."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.claims: list[str] = []
        self.silent_reads = 0
        self.lost: list[str] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        body = kwargs.get("body") or {}
        annotations = ((body.get("metadata") or {}).get("annotations") or {}) if isinstance(body, dict) else {}
        if method == "PATCH" and CLAIM_ANNOTATION in annotations and self.claims:
            fate = self.claims.pop(0)
            self.lost.append(path)
            if fate == "applied":
                await super().request(method, path, **kwargs)
            raise Unavailable("the Kubernetes API server did not answer patch configmaps within 30 s (imitated)")
        if method == "GET" and path in self.lost and self.silent_reads > 0:
            self.silent_reads -= 1
            raise Unavailable("the Kubernetes API server did not answer get configmaps within 30 s (imitated)")
        return await super().request(method, path, **kwargs)


async def members(api, namespace: str) -> set[str]:
    _, found = await request(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps",
                             params={"labelSelector": LABEL_POOL})
    return {cm["metadata"]["labels"][naming.LABEL_AGENT_ID] for cm in found["items"]
            if not cm["metadata"].get("deletionTimestamp")}


async def full(backend: K8sBackend, api, namespace: str, size: int) -> set[str]:
    """Wait for ``size`` members, all ready in the backend's eyes."""
    async def check():
        ids = await members(api, namespace)
        assert backend.pool_keeper is not None
        ready = {m.id for m in backend.pool_keeper.members() if m.state == "ready"}
        return ids if len(ids) == size and ids <= ready else None
    return await wait_for(check, f"{size} ready members", timeout=120)


async def agents_of(api, namespace: str, session: str) -> set[str]:
    """The agents of ``session`` in the cluster: ConfigMaps labelled with it."""
    _, found = await request(api, "GET", f"/api/v1/namespaces/{namespace}/configmaps",
                             params={"labelSelector": f"{naming.LABEL_SESSION}={session}"})
    return {cm["metadata"]["labels"][naming.LABEL_AGENT_ID] for cm in found["items"]
            if not cm["metadata"].get("deletionTimestamp")}


async def warm_create(backend: K8sBackend, session: str):
    spec = build_spec(backend.settings, session, naming.generate_agent_id(), "echo", owner="ann")
    return await backend.create(spec, names_id=False)


async def test_a_claim_whose_write_got_no_answer_never_leaves_a_second_agent(api, namespace):
    client = LostAnswers(api)
    backend = K8sBackend(settings_for(namespace, POOL), client=client)
    await backend.start()
    try:
        before = await full(backend, api, namespace, 2)

        # Applied, its answer lost: read back, it carries this claim's mark; the agent is the member.
        client.claims = ["applied"]
        state = await warm_create(backend, "lost1")
        assert state.id in before and state.spec.pool == "echo"
        assert await agents_of(api, namespace, "lost1") == {state.id}
        assert await members(api, namespace) == before - {state.id}

        # Not applied, and the reads back get no answer either: the create takes another member;
        # the first stays a member (its claim never came), nothing of it is anyone's.
        now = await full(backend, api, namespace, 2)
        client.claims, client.silent_reads = ["unsent"], 3
        second = await warm_create(backend, "lost2")
        assert second.id in now and second.spec.pool == "echo"
        assert await agents_of(api, namespace, "lost2") == {second.id}
        assert now - {second.id} <= await members(api, namespace)

        # Applied, but the reads back get no answer: the create goes on without it (another
        # member), and the member its claim reached, an agent of no create, is removed.
        now = await full(backend, api, namespace, 2)
        client.claims, client.silent_reads = ["applied"], 3
        third = await warm_create(backend, "lost3")
        [orphan] = [p.rsplit("/", 1)[1].removeprefix("agent-").removesuffix("-config") for p in client.lost[-1:]]
        assert orphan in now and third.id != orphan

        async def only_the_create() -> bool:
            return await agents_of(api, namespace, "lost3") == {third.id}
        await wait_for(only_the_create, "the member claimed for nobody to be removed", timeout=90)

        async def orphan_gone() -> bool:
            return await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-{orphan}") is None
        await wait_for(orphan_gone, "the StatefulSet of the member claimed for nobody to go")
        assert orphan not in await full(backend, api, namespace, 2)  # and the pool refilled
    finally:
        await backend.close()


async def test_an_unreachable_launcher_leaves_its_agent_bound_by_its_configmap_and_its_token_goes(api, namespace):
    """kwok's pods run nothing: no launcher answers on a pod's IP."""
    backend = K8sBackend(settings_for(namespace, POOL), client=Client(api))
    await backend.start()
    try:
        before = await full(backend, api, namespace, 2)
        state = await warm_create(backend, "far")
        assert state.id in before
        configmap = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/agent-{state.id}-config")
        assert configmap["data"]["AGENTPROXY_BOUND"] == "1" and LABEL_POOL not in configmap["metadata"]["labels"]

        async def token_gone() -> bool:
            return await get(api, f"/api/v1/namespaces/{namespace}/secrets/agent-{state.id}-binding") is None
        await wait_for(token_gone, "the claimed member's token Secret to go (its launcher stops waiting)")
        after = await full(backend, api, namespace, 2)
        assert state.id not in after
        # Nothing of the claim is left a member, and no claim step replays the member's start.
        record = backend.progress.get(state.id)
        assert record is not None and [s.name for s in record.steps][:1] == ["claimed"]
        assert not {"applied", "scheduled", "container_started"} & {s.name for s in record.steps}
    finally:
        await backend.close()


async def test_a_half_made_member_is_replaced(api, namespace):
    backend = K8sBackend(settings_for(namespace, POOL), client=Client(api))
    await backend.start()
    try:
        first, second = sorted(await full(backend, api, namespace, 2))
        # A crash after the ConfigMap, before the token's Secret: no claim could ever bind it.
        await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/secrets/agent-{first}-binding")
        # A crash that left a StatefulSet alone (its ConfigMap gone, the rest orphaned).
        await request(api, "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/agent-{second}-config",
                      body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Orphan"})
        # A create meanwhile is served by neither: cold, or by a new member.
        state = await warm_create(backend, "half")
        assert state.id not in (first, second)
        assert await agents_of(api, namespace, "half") == {state.id}

        async def replaced() -> bool:
            gone = [await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-{m}") is None
                    for m in (first, second)]
            return all(gone) and len(await members(api, namespace)) == 2
        await wait_for(replaced, "both half-made members to be removed and the pool refilled", timeout=150)
    finally:
        await backend.close()


class ClaimedMeanwhile(Client):
    """The real client, except that before its first read of a member's binding Secret (the
    token a claim reads after taking the member) it awaits :attr:`meanwhile`: another
    replica's claim of the same member, which the real race fits between the take and that
    read only now and then."""

    def __init__(self, api: Any) -> None:
        super().__init__(api)
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if method == "GET" and path.endswith("-binding") and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return await super().request(method, path, **kwargs)


async def test_a_member_another_replica_claims_meanwhile_stays_its_agent_and_its_start_is_followed(api, namespace):
    """Replicas A and B take the one member at once; A's claim comes first and drops the
    member's token. B, finding no token, removes the member as half-made, on the condition of
    the version it took it at (by then its cache shows A's claim: a removal on that version
    would delete A's owner's agent), goes cold, and follows the agent's start as any other
    replica's (what its own claim saw of it meanwhile was dropped with that claim)."""
    settings = settings_for(namespace, "pools=[{name: echo, size: 1, agent: echo}]")
    client = ClaimedMeanwhile(api)
    a, b = K8sBackend(settings, client=Client(api)), K8sBackend(settings, client=client)
    await a.start()
    await b.start()
    try:
        [member] = await full(a, api, namespace, 1)
        await full(b, api, namespace, 1)
        name = naming.configmap_name(member)

        async def a_claims_first() -> None:
            assert (await warm_create(a, "first")).id == member

            async def b_sees_it() -> bool:
                token = await get(api, f"/api/v1/namespaces/{namespace}/secrets/agent-{member}-binding")
                current = b.cached(CONFIGMAP, name)
                return token is None and current is not None and LABEL_POOL not in current["metadata"]["labels"]
            await wait_for(b_sees_it, "A's claim to drop the token and reach B's cache")
        client.meanwhile = a_claims_first

        second = await warm_create(b, "second")
        assert client.meanwhile is None and second.id != member  # B's claim met A's
        assert b.pool_keeper is not None
        await asyncio.gather(*b.pool_keeper._busy)  # B's removal of the member it took

        assert await agents_of(api, namespace, "first") == {member}
        assert await get(api, f"/apis/apps/v1/namespaces/{namespace}/statefulsets/agent-{member}") is not None
        assert (await b.get("first", member)).spec.session == "first"

        # B follows the agent's start: it ends (kwok marks the pod Ready) with the claim's steps.
        async def ended_on_b() -> bool:
            record = b.progress.get(member)
            return record is not None and record.ended
        await wait_for(ended_on_b, "the start of A's agent to end on B")
        record = b.progress.get(member)
        assert record is not None and [s.name for s in record.steps][0] == "claimed", record.to_json()
        assert record.steps[-1].name == "ready", record.to_json()
    finally:
        await b.close()
        await a.close()


BOB = "e2e-pool-bob-key"
KEYS = json.dumps([{"name": "bob", "sha256": hashlib.sha256(BOB.encode()).hexdigest()}])
QUOTA = (f"server.api_keys={KEYS}", "teams.quotas={default: {agents: 2}}", "pools=[{name: echo, size: 1, agent: echo}]")


async def as_bob(http: aiohttp.ClientSession, server: Served, method: str, path: str, body: Any = None):
    async with http.request(method, server.base + path, json=body, headers={"Authorization": f"Bearer {BOB}"},
                            timeout=aiohttp.ClientTimeout(total=60)) as response:
        return response.status, await response.json()


async def test_a_claimed_member_counts_once_against_the_quotas_on_every_replica(servers, api, namespace):
    a, b = [await servers.start(*QUOTA) for _ in range(2)]

    async with aiohttp.ClientSession() as http:
        async def one_ready() -> bool:
            for server in (a, b):
                async with http.get(f"{server.base}/metrics", headers={"Authorization": f"Bearer {BOB}"}) as resp:
                    text = await resp.text()
                if 'agentproxy_pool_members{pool="echo",state="ready"} 1.0' not in text:
                    return False
            return True
        await wait_for(one_ready, "the pool's member to be ready on both replicas", timeout=120)
        status, agent = await as_bob(http, a, "POST", "/sessions/q/agents", {})
        assert status == 201 and agent["details"]["start"] == "warm", agent

        # Its reservation in the ledger names the agent, not the id the create began with.
        ledger = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/{LEDGER_NAME}")
        assert [r["id"] for r in json.loads(ledger["data"][KEY])] == [agent["id"]]

        async def counted_once(server: Served) -> bool:
            status, body = await as_bob(http, server, "GET", "/usage")
            return status == 200 and body["quotas"][0]["usage"]["agents"] == 1
        for server in (a, b):
            await wait_for(functools.partial(counted_once, server), "the claimed agent to count once", timeout=30)
        # So the second agent of a quota of two is let through, on the other replica too.
        status, body = await as_bob(http, b, "POST", "/sessions/q/agents", {})
        assert status == 201, body
        status, body = await as_bob(http, a, "POST", "/sessions/q/agents", {})
        assert status == 429 and body["error"]["field"] == "teams.quotas.default.agents", body


async def test_another_replica_takes_the_refill_over_when_the_holder_dies(servers, api, namespace):
    a = await servers.start("pools=[{name: echo, size: 1, agent: echo}]")

    async def held() -> str | None:
        lease = await get(api, f"/api/v1/namespaces/{namespace}/configmaps/{LEASE_NAME}")
        return ((lease or {}).get("metadata", {}).get("annotations") or {}).get(HOLDER_ANNOTATION)
    holder = await wait_for(held, "the first replica to hold the refill lease", timeout=120)
    async def one_member() -> set[str] | None:
        return await _members_if(api, namespace, 1)
    [member] = await wait_for(one_member, "the pool's member", timeout=120)
    b = await servers.start("pools=[{name: echo, size: 1, agent: echo}]")
    assert a.proc is not None
    a.proc.kill()  # no SIGTERM: the lease is not let go, it expires
    await a.proc.wait()

    async def ready_on_b() -> bool:
        return counted(await b.metrics(), "agentproxy_pool_members", pool="echo", state="ready") == 1
    await wait_for(ready_on_b, "the other replica to see the member ready", timeout=60)
    status, agent, _ = await b.call("POST", "/sessions/t/agents", {})
    assert status == 201 and agent["id"] == member and agent["details"]["start"] == "warm", agent
    # Only b is left to refill: once the dead holder's lease expires, it takes it over.
    refilled = await wait_for(one_member, "the pool to be refilled", timeout=120)
    assert member not in refilled
    assert await held() not in (None, holder)


async def _members_if(api, namespace: str, size: int) -> set[str] | None:
    found = await members(api, namespace)
    return found if len(found) == size else None
