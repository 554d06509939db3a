"""The refill lease of k8s pools, the pure part: which replica makes and removes members."""

from __future__ import annotations

import pytest

from agentproxy.backends.k8s import poollease
from agentproxy.backends.k8s.poollease import CREATE, HOLD, RENEW, TAKE, WAIT, held_by, step

NOW = 1_000_000.0


def lease(holder: str, renewed: float | str) -> dict:
    return {"metadata": {"name": poollease.LEASE_NAME, "resourceVersion": "7",
                         "annotations": {poollease.HOLDER_ANNOTATION: holder,
                                         poollease.RENEWED_ANNOTATION: str(renewed)}}}


@pytest.mark.parametrize("live, action", [
    (None, CREATE),
    (lease("me", NOW - 1), HOLD),
    (lease("me", NOW - poollease.RENEW_AFTER), RENEW),
    (lease("me", NOW - 100), RENEW),  # its own, expired: renewed (nobody took it over)
    (lease("other", NOW - 1), WAIT),
    (lease("other", NOW - poollease.EXPIRES_AFTER + 1), WAIT),
    (lease("other", NOW - poollease.EXPIRES_AFTER), TAKE),  # its holder stopped renewing
    (lease("other", "garbage"), TAKE),
    ({"metadata": {"name": poollease.LEASE_NAME}}, TAKE),
])
def test_what_a_replica_does_with_the_lease(live, action):
    assert step(live, "me", NOW) == action


def test_a_written_lease_names_its_holder_and_renewal():
    written = {"metadata": held_by("me", NOW)}
    assert step(written, "me", NOW) == HOLD and step(written, "other", NOW) == WAIT
    assert step(written, "other", NOW + poollease.EXPIRES_AFTER) == TAKE
