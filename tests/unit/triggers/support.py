"""What the triggers' tests share: the vendored GitHub payloads and GitHub's way of signing them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

PAYLOADS = Path(__file__).parent / "payloads"
SECRET = "It's a Secret to Everybody"  # the secret of GitHub's own example of signature checking


def payload(name: str) -> bytes:
    """The bytes of one vendored payload as GitHub would send them (compact JSON)."""
    return json.dumps(json.loads((PAYLOADS / f"{name}.json").read_text()), separators=(",", ":")).encode()


def github_headers(event: str, body: bytes, secret: str = SECRET, delivery: str | None = None) -> dict[str, str]:
    """The headers GitHub sends with ``body``: event, delivery id and signature."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={mac}", "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/test"}


def hook(**fields: Any) -> dict[str, Any]:
    """A hook's settings for issues labelled ``bug`` in the example repository."""
    base: dict[str, Any] = {
        "scheme": "github", "secret_env": "TEST_HOOK_SECRET", "owner": "alice", "agent": "echo",
        "match": {"events": ["issues", "pull_request"], "actions": ["opened"], "labels": ["bug"],
                  "repositories": ["Codertocat/Hello-World"]},
        "prompt": "Fix {{ repository.full_name }}#{{ issue.number }}: {{ issue.title }} (by {{ sender.login }})",
    }
    base.update(fields)
    return base
