"""Hook delivery ids shared by replicas in k8s mode: a Lease per delivery, created conditionally,
on a fake clock. Two replicas given one delivery at once, a failed handling given back, a claim
left by a replica that died taken over once stale, and the sweep's selector.

The Leases live in :class:`~.support.LeaseServer`, which keeps only the API server's rule of
conditional writes: a stale claim is one 60 s old, which a fake clock makes at once; the e2e
suite (tests/e2e/test_hooks_k8s.py) runs the same code against a real API server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from agentproxy.backends.k8s.deliveries import (
    STATE,
    WINDOW_LABEL,
    DeliveryLeases,
    claimable,
    delivery_lease,
    lease_name,
    sweep_selector,
    window_of,
    with_state,
)
from agentproxy.backends.k8s.kinds import LEASE

from .support import LeaseServer

NS = "agents"


class Clock:
    """Seconds since the epoch, as the test says."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 28, 22, 4, 30, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now


def _replicas(server: LeaseServer, clock: Clock) -> tuple[DeliveryLeases, DeliveryLeases]:
    return (DeliveryLeases(lambda: server, NS, "agentproxy", "r1", clock),
            DeliveryLeases(lambda: server, NS, "agentproxy", "r2", clock))


def _state(server: LeaseServer, hook: str, delivery: str) -> str:
    lease = server.objects[LEASE.item(NS, lease_name(hook, delivery))]
    return str(lease["metadata"]["annotations"][STATE])


async def test_one_delivery_sent_to_two_replicas_at_once_is_handled_by_one() -> None:
    server, clock = LeaseServer(), Clock()
    one, two = _replicas(server, clock)
    for n in range(20):
        results = await asyncio.gather(one.claim("gh", f"d{n}"), two.claim("gh", f"d{n}"))
        assert sorted(results) == [False, True], (n, results)
    assert len(server.objects) == 20
    # Handled: a duplicate for both replicas, however old the record.
    winner = one if _holder(server, "d0") == "r1" else two
    await winner.keep("gh", "d0")
    assert _state(server, "gh", "d0") == "done"
    clock.now += 3600
    assert await one.claim("gh", "d0") is False and await two.claim("gh", "d0") is False
    # The same delivery id of another hook is another delivery.
    assert await one.claim("other", "d0") is True


def _holder(server: LeaseServer, delivery: str) -> str:
    return str(server.objects[LEASE.item(NS, lease_name("gh", delivery))]["spec"]["holderIdentity"])


async def test_a_handling_given_back_is_taken_by_the_next_copy_and_a_dead_claim_once_stale() -> None:
    server, clock = LeaseServer(), Clock()
    one, two = _replicas(server, clock)
    assert await one.claim("gh", "d1") is True
    await one.release("gh", "d1")  # e.g. 429: the sender tries again, maybe through the other replica
    assert _state(server, "gh", "d1") == "released"
    assert await two.claim("gh", "d1") is True and _holder(server, "d1") == "r2"
    await two.keep("gh", "d1")
    assert await one.claim("gh", "d1") is False
    # r1 claims d2 and dies: r2 takes it only once the claim is 60 s old.
    assert await one.claim("gh", "d2") is True
    clock.now += 59
    assert await two.claim("gh", "d2") is False
    clock.now += 2
    assert await two.claim("gh", "d2") is True
    lease = server.objects[LEASE.item(NS, lease_name("gh", "d2"))]
    assert lease["spec"]["holderIdentity"] == "r2" and lease["spec"]["leaseTransitions"] == 1
    # The first replica, back late, cannot overwrite the new holder's word.
    await one.keep("gh", "d2")
    assert _state(server, "gh", "d2") == "handling" and _holder(server, "d2") == "r2"


def test_the_record_and_the_sweep() -> None:
    now = datetime(2026, 3, 28, 22, 4, 30, tzinfo=UTC).timestamp()
    lease = delivery_lease(NS, "gh", "72d3162e", "r1", now)
    assert lease["metadata"]["labels"][WINDOW_LABEL] == window_of(now) == "202603282200"
    assert lease["metadata"]["name"] == lease_name("gh", "72d3162e") and len(lease["metadata"]["name"]) < 64
    assert not claimable(lease, now + 59) and claimable(lease, now + 60)
    assert not claimable(with_state(lease, "done"), now + 3600) and claimable(with_state(lease, "released"), now)
    # Kept: the current window, the two before it and the next; older windows are deleted.
    assert sweep_selector(now) == ("app.kubernetes.io/component=hook-delivery,agentproxy.io/delivery-window notin "
                                   "(202603282140,202603282150,202603282200,202603282210)")
