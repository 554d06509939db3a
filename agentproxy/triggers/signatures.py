"""HMAC-SHA256 signatures: of inbound deliveries (checked) and of outbound notifications (made).

Inbound, two schemes:

- ``github``: ``X-Hub-Signature-256: sha256=<hex>``, the HMAC-SHA256 of the raw body with the
  hook's secret, as GitHub signs its webhooks;
- ``hmac-sha256``: the same digest in a header the hook names (``sha256=<hex>`` or bare hex).

Outbound notifications carry ``X-Agentproxy-Timestamp: <unix seconds>`` and
``X-Agentproxy-Signature: v1=<hex>``, the HMAC-SHA256 of ``"<timestamp>." + body``: a receiver
checks both and refuses a timestamp too old (:func:`verify_notification`), so a captured message
cannot be replayed later. Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SCHEMES = ("github", "hmac-sha256")
GITHUB_HEADER = "X-Hub-Signature-256"
DEFAULT_HMAC_HEADER = "X-Signature-256"
TIMESTAMP_HEADER = "X-Agentproxy-Timestamp"
SIGNATURE_HEADER = "X-Agentproxy-Signature"


def digest(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``body``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def github_signature(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends with ``body``."""
    return "sha256=" + digest(secret, body)


def signature_valid(scheme: str, header: str, secret: bytes, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when ``headers`` carry a valid signature of ``body`` in ``header`` (by ``scheme``)."""
    presented = headers.get(GITHUB_HEADER if scheme == "github" else header)
    if presented is None:
        return False
    presented = presented.strip()
    if presented.startswith("sha256="):
        presented = presented[len("sha256="):]
    elif scheme == "github":
        return False
    try:
        raw = presented.encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(raw, digest(secret, body).encode("ascii"))


def sign_notification(secret: bytes, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers that sign an outbound notification ``body`` sent at ``timestamp``."""
    mac = digest(secret, str(timestamp).encode("ascii") + b"." + body)
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: f"v1={mac}"}


def verify_notification(secret: bytes, body: bytes, headers: Mapping[str, str], now: float,
                        tolerance: float = 300.0) -> bool:
    """What a receiver checks: the signature of ``body`` with its timestamp, and a timestamp
    within ``tolerance`` seconds of ``now``."""
    stamp, signature = headers.get(TIMESTAMP_HEADER, ""), headers.get(SIGNATURE_HEADER, "")
    if not stamp.isdigit() or not signature.startswith("v1=") or abs(now - int(stamp)) > tolerance:
        return False
    expected = sign_notification(secret, body, int(stamp))[SIGNATURE_HEADER]
    return hmac.compare_digest(signature.encode("ascii", "replace"), expected.encode("ascii"))
