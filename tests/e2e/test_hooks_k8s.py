"""Hooks defined at run time in k8s mode, with two `agentproxy serve` replicas that share no disk
(each its own data directory) against a real API server: a hook defined through one replica is
delivered through the other; one delivery id sent to both replicas at once makes one agent; the
hook's secret value is in a Secret and in no ConfigMap."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

from agentproxy.backends.k8s.deliveries import STATE, lease_name
from agentproxy.backends.k8s.hookstore import DEFINITIONS, SECRETS
from agentproxy.backends.k8s.kinds import CONFIGMAP, LEASE, SECRET

from .kube import get, request, wait_for
from .served import Served

HOOK_SECRET = "e2e-hook-secret-5d41402abc4b2a76"
BODY = json.dumps({"action": "opened", "issue": {"number": 7, "title": "Flaky test", "labels": []},
                   "repository": {"full_name": "acme/api"}, "sender": {"login": "octocat"}}).encode()


async def _deliver(served: Served, delivery: str, secret: str = HOOK_SECRET) -> tuple[int, Any]:
    """POST one signed GitHub ``issues`` delivery to ``served``'s hook ``gh``."""
    mac = hmac.new(secret.encode(), BODY, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": f"sha256={mac}",
               "Content-Type": "application/json"}
    async with served.http.post(served.base + "/hooks/gh", data=BODY, headers=headers) as resp:
        return resp.status, await resp.json()


async def _agents(served: Served) -> list[dict]:
    status, body, _ = await served.call("GET", "/sessions/hook-gh/agents")
    assert status == 200, body
    return list(body["agents"])


async def test_a_hook_defined_through_one_replica_is_delivered_once_through_both(servers, api, namespace, tmp_path):
    one, two = [await servers.start(f"local_mode.data_dir={tmp_path / f'data-{n}'}") for n in range(2)]
    # The second replica has read the (empty) store before the hook exists.
    status, body, _ = await two.call("GET", "/hooks")
    assert status == 200 and body["hooks"] == [], body
    status, body, _ = await one.call("PUT", "/hooks/gh", {
        "secret_value": HOOK_SECRET, "owner": "ops", "match": {"events": ["issues"]},
        "prompt": "Work on {{ repository.full_name }}#{{ issue.number }}: {{ issue.title }}"})
    assert status == 201 and body["secret"] == "stored", body

    # Delivered through the other replica: found at once (a read of the store on the miss).
    first = str(uuid.uuid4())
    status, body = await _deliver(two, first)
    assert status == 202 and body["hook"] == "gh", body
    # Again through the first replica, which never saw it: a duplicate, told by the delivery's Lease.
    status, body = await _deliver(one, first)
    assert status == 200 and body["duplicate"] is True, body

    # One new delivery id sent to both replicas at once: one agent, the other answered as a duplicate.
    both = str(uuid.uuid4())
    answers = await asyncio.gather(_deliver(one, both), _deliver(two, both))
    assert sorted(s for s, _ in answers) == [200, 202], answers
    assert next(b for s, b in answers if s == 200)["duplicate"] is True
    lease = await get(api, LEASE.item(namespace, lease_name("gh", both)))
    assert lease is not None and lease["metadata"]["annotations"][STATE] == "done", lease

    async def two_agents() -> list[dict] | None:
        agents = [await _agents(r) for r in (one, two)]
        return agents[0] if all(len(a) == 2 for a in agents) else None

    agents = await wait_for(two_agents, "both replicas to list the two agents", timeout=60)
    assert {a["owner"] for a in agents} == {"ops"}
    await asyncio.sleep(2)  # a second agent, had one been made, would be listed by now
    assert len(await _agents(one)) == 2

    # The secret value: in the hooks' Secret, in no ConfigMap, in no answer.
    secret = await get(api, SECRET.item(namespace, SECRETS))
    assert secret is not None and base64.b64decode(secret["data"]["gh"]).decode() == HOOK_SECRET
    _, configmaps = await request(api, "GET", CONFIGMAP.collection(namespace))
    assert DEFINITIONS in {c["metadata"]["name"] for c in configmaps["items"]}
    assert HOOK_SECRET not in json.dumps(configmaps)
    assert base64.b64encode(HOOK_SECRET.encode()).decode() not in json.dumps(configmaps)
    for served in (one, two):
        for path in ("/hooks", "/hooks/gh"):
            status, body, _ = await served.call("GET", path)
            assert status == 200 and HOOK_SECRET not in json.dumps(body), body
    assert HOOK_SECRET not in one.output() + two.output()

    # Deleted through one replica: the other stops taking deliveries within a few seconds.
    status, _, _ = await one.call("DELETE", "/hooks/gh")
    assert status == 204

    async def gone() -> bool:
        status, _ = await _deliver(two, str(uuid.uuid4()))
        return status == 404

    await wait_for(gone, "the other replica to drop the deleted hook", timeout=30)
    secret = await get(api, SECRET.item(namespace, SECRETS))
    assert "gh" not in ((secret or {}).get("data") or {})
