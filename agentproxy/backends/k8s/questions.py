"""``waiting_input`` in k8s mode: what a pod's hooks report, who sent it, and where it is kept.

A Claude agent's hooks run in its pod, where the proxy cannot read their file. So they
report each change (``POST /hooks/waiting``, see :mod:`agentproxy.waiting`), signed by the
pod's own ServiceAccount token, projected for the audience ``k8s_mode.waiting_audience``
(see ``templates/statefulset.yaml.j2``). Nothing secret is rendered, nor kept by the proxy:

- **Who sent it.** A TokenReview (the API server's verdict on the token, audience included)
  names the pod the token is bound to; the report is about that pod's agent, and no other (the
  body names no agent). A token of another namespace, of no pod, or of a pod that is not an
  agent's current pod (an old pod's, until it expires) is refused. Verdicts are kept for
  :data:`REVIEW_TTL` seconds by the token's hash, so a question costs one review, not one per
  report. Before a review, a token is read without trust (:func:`claimed_pod`): one that does
  not even claim the audience and a current agent pod costs the API server nothing; and at
  most :data:`MAX_PENDING` reviews are under way at once.
- **Where it is kept.** On the agent's StatefulSet, as the annotation
  :data:`QUESTION_ANNOTATION` (the question, the pod's uid, the time), merge-patched by its own
  field manager (an apply by the proxy's manager leaves it alone). Every replica's watch sees
  it, so every replica shows the same status; and since it names the pod, a question of a
  pod that is gone (a crash, a restart) is no longer shown (:func:`question_of`).

The functions here are pure; :class:`TokenReviews` does the review calls.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import BackendError, Unavailable

Obj = Mapping[str, Any]

QUESTION_ANNOTATION = "agentproxy.io/question"
"""The pending question of an agent's current pod, on its StatefulSet (JSON: ``question``, ``pod``, ``at``)."""
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
"""What a TokenReview says of a token bound to a pod (``status.user.extra``)."""
REVIEW_TTL = 60.0
"""Seconds a token's verdict is kept (a deleted pod's token is refused by the pod check anyway)."""
MAX_REVIEWS = 10_000
"""Verdicts kept at most (then the oldest go)."""
MAX_QUESTION = 2000
"""Characters of a question kept (as :data:`agentproxy.waiting.MAX_QUESTION`)."""
MAX_TOKEN = 16_384
"""Bytes of a token looked at; a longer one is refused unread."""
MAX_PENDING = 16
"""Reviews under way at once; beyond that a report is answered 503 at once (whoever can reach the
proxy can make up tokens that look plausible: they must not queue up calls to the API server)."""


class Refused(BackendError):
    """A report the proxy does not take: 401 (no valid token) or 403 (not an agent's pod)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = "unauthorized" if status == 401 else "forbidden"


@dataclass(frozen=True)
class PodIdentity:
    """The pod a token was made for."""

    namespace: str
    name: str
    uid: str


def claimed_pod(token: str, audience: str) -> str | None:
    """The pod name a token claims, when it claims ``audience`` (read without checking the
    signature: only to spare the API server reviews of tokens that cannot pass), else None."""
    parts = token.split(".")
    if len(token) > MAX_TOKEN or len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    if not isinstance(payload, dict):
        return None
    aud = payload.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        return None
    claims = payload.get("kubernetes.io")
    pod = claims.get("pod") if isinstance(claims, dict) else None
    name = pod.get("name") if isinstance(pod, dict) else None
    return name if isinstance(name, str) and name else None


def review_body(token: str, audience: str) -> dict[str, Any]:
    """The TokenReview that asks the API server about ``token`` for ``audience``."""
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": [audience]}}


def pod_of_review(review: Obj, namespace: str) -> PodIdentity:
    """The pod of a TokenReview's answer; :class:`Refused` when the token is not valid for the
    audience, or not bound to a pod of ``namespace``."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        raise Refused(401, "the token is not valid for this proxy: " + str(status.get("error") or "not authenticated"))
    user = status.get("user") or {}
    extra = user.get("extra") or {}
    names, uids = extra.get(POD_NAME_EXTRA) or [], extra.get(POD_UID_EXTRA) or []
    username = str(user.get("username") or "")
    prefix = "system:serviceaccount:"
    token_namespace = username[len(prefix):].partition(":")[0] if username.startswith(prefix) else ""
    if len(names) != 1 or len(uids) != 1 or not names[0] or not uids[0]:
        raise Refused(403, "the token is not bound to a pod")
    if token_namespace != namespace:
        raise Refused(403, f"the token's pod is not in the agents' namespace {namespace}")
    return PodIdentity(namespace, str(names[0]), str(uids[0]))


def question_annotation(question: str | None, pod_uid: str, when: datetime) -> str | None:
    """The annotation's value for ``question`` of the pod ``pod_uid`` (None: no question)."""
    if not question:
        return None
    text = " ".join(question.split())[:MAX_QUESTION]
    return json.dumps({"question": text, "pod": pod_uid, "at": when.isoformat()}, separators=(",", ":"))


def question_patch(value: str | None) -> dict[str, Any]:
    """The merge patch that sets (or, with None, removes) the annotation."""
    return {"metadata": {"annotations": {QUESTION_ANNOTATION: value}}}


def question_of(statefulset: Obj | None, pod: Obj | None) -> str | None:
    """The question the agent's current pod asks, from the annotation: None without one, or
    when it names another pod (the pod that asked is gone)."""
    text = ((statefulset or {}).get("metadata", {}).get("annotations") or {}).get(QUESTION_ANNOTATION)
    uid = ((pod or {}).get("metadata") or {}).get("uid")
    if not text or not uid:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("pod") != uid:
        return None
    question = data.get("question")
    return question if isinstance(question, str) and question else None


class TokenReviews:
    """Verdicts of the API server on the tokens of pods, kept :data:`REVIEW_TTL` seconds."""

    def __init__(self, review: Callable[[dict[str, Any]], Awaitable[Obj]], namespace: str, audience: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._review = review
        self.namespace = namespace
        self.audience = audience
        self._clock = clock
        self._kept: dict[str, tuple[float, PodIdentity | tuple[int, str]]] = {}
        self.reviews = 0
        """Reviews asked of the API server."""
        self._pending = 0

    async def pod_of(self, token: str, is_agent_pod: Callable[[str], bool]) -> PodIdentity:
        """The pod ``token`` was made for; :class:`Refused` when it is not valid, or not an
        agent's pod (``is_agent_pod(name)`` is asked before the API server is)."""
        name = claimed_pod(token, self.audience)
        if name is None:
            raise Refused(401, f"not a ServiceAccount token of a pod for the audience {self.audience}")
        if not is_agent_pod(name):
            raise Refused(403, "the token's pod is not an agent's")
        key = hashlib.sha256(token.encode()).hexdigest()  # the token itself is not kept
        now = self._clock()
        kept = self._kept.get(key)
        if kept is None or kept[0] <= now:
            if self._pending >= MAX_PENDING:
                raise Unavailable("too many reports are being checked; try again", retry_after=1.0)
            self.reviews += 1
            self._pending += 1
            try:
                verdict: PodIdentity | tuple[int, str] = pod_of_review(
                    await self._review(review_body(token, self.audience)), self.namespace)
            except Refused as exc:
                verdict = (exc.http_status, exc.message)
            finally:
                self._pending -= 1
            if len(self._kept) >= MAX_REVIEWS:
                self._forget_oldest(now)
            kept = self._kept[key] = (now + REVIEW_TTL, verdict)
        if isinstance(kept[1], tuple):
            raise Refused(*kept[1])
        return kept[1]

    def _forget_oldest(self, now: float) -> None:
        for key in [k for k, (until, _) in self._kept.items() if until <= now]:
            del self._kept[key]
        while len(self._kept) >= MAX_REVIEWS:
            del self._kept[next(iter(self._kept))]
