"""Names and labels of everything agentproxy creates.

The object names are fixed by the spec (see the README): for agent ``ID`` the
StatefulSet is ``agent-ID``, its headless Service ``agent-ID-headless``, its
ConfigMap ``agent-ID-config``, its pod ``agent-ID-0`` and its data claim
``data-agent-ID-0``.
"""

from __future__ import annotations

import re
import secrets
import string

AGENT_ID_MAX = 46
"""``agent-{id}`` must fit the 52 characters a StatefulSet name may have (its pods
get a hash label appended), and ``agent-{id}-headless`` the 63 of a Service."""

SESSION_ID_MAX = 63
"""Session ids are label values, which Kubernetes caps at 63 characters."""

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

AGENT_ID_RULE = (
    f"must be a DNS-1123 label of at most {AGENT_ID_MAX} characters: lowercase letters, "
    "digits and '-', starting and ending with a letter or digit"
)
SESSION_ID_RULE = (
    f"must be 1 to {SESSION_ID_MAX} characters of letters, digits, '-', '_' or '.', "
    "starting and ending with a letter or digit"
)
DNS_LABEL_RULE = (
    "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
    "starting and ending with a letter or digit"
)
DNS_SUBDOMAIN_RULE = (
    "must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' and '.', "
    "starting and ending with a letter or digit"
)

MANAGED_BY = "agentproxy"
LABEL_AGENT_ID = "agentproxy.io/agent-id"
LABEL_SESSION = "agentproxy.io/session"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_INSTANCE = "app.kubernetes.io/instance"
ANNOTATION_SUSPENDED = "agentproxy.io/suspended"
"""On a suspended agent's StatefulSet (which then has no replicas): why and when, as JSON."""
ANNOTATION_LAST_ACTIVE = "agentproxy.io/last-active"
"""On an agent's StatefulSet: when a proxy last saw a request to the agent (idle culling's clock)."""


def is_dns_label(value: str) -> bool:
    """True for a DNS-1123 label (namespaces, Service names)."""
    return isinstance(value, str) and len(value) <= 63 and bool(_DNS_LABEL.fullmatch(value))


def is_dns_subdomain(value: str) -> bool:
    """True for a DNS-1123 subdomain (most object names)."""
    return isinstance(value, str) and len(value) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(value))


def is_valid_agent_id(value: object) -> bool:
    """True when ``value`` can name an agent."""
    return isinstance(value, str) and is_dns_label(value) and len(value) <= AGENT_ID_MAX


def is_valid_session_id(value: object) -> bool:
    """True when ``value`` can name a session (a non-empty label value)."""
    return isinstance(value, str) and len(value) <= SESSION_ID_MAX and bool(_LABEL_VALUE.fullmatch(value))


def generate_agent_id() -> str:
    """A short random agent id: a letter then seven letters or digits (36**7 choices)."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(alphabet) for _ in range(7))


def statefulset_name(agent_id: str) -> str:
    """Name of the agent's StatefulSet."""
    return f"agent-{agent_id}"


def headless_service_name(agent_id: str) -> str:
    """Name of the agent's headless Service."""
    return f"agent-{agent_id}-headless"


def configmap_name(agent_id: str) -> str:
    """Name of the agent's ConfigMap."""
    return f"agent-{agent_id}-config"


def pod_name(agent_id: str) -> str:
    """Name of the agent's only pod."""
    return f"agent-{agent_id}-0"


def pvc_name(agent_id: str) -> str:
    """Name of the agent's data claim (volumeClaimTemplate ``data`` of pod 0)."""
    return f"data-agent-{agent_id}-0"


def object_names(agent_id: str) -> dict[str, str]:
    """Every object name of an agent, by kind."""
    return {
        "statefulset": statefulset_name(agent_id),
        "service": headless_service_name(agent_id),
        "configmap": configmap_name(agent_id),
        "pod": pod_name(agent_id),
        "pvc": pvc_name(agent_id),
    }


def selector_labels(agent_id: str) -> dict[str, str]:
    """Labels that select the agent's pod. A StatefulSet's selector is immutable,
    so it holds only what can never change for an agent."""
    return {LABEL_INSTANCE: statefulset_name(agent_id), LABEL_AGENT_ID: agent_id}


def standard_labels(agent_id: str, session_id: str, component: str = "agent") -> dict[str, str]:
    """The labels every object of an agent carries."""
    return {
        "app.kubernetes.io/name": "agentapi",
        LABEL_INSTANCE: statefulset_name(agent_id),
        "app.kubernetes.io/component": component,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_AGENT_ID: agent_id,
        LABEL_SESSION: session_id,
    }


MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
"""Label selector that matches every object agentproxy manages."""
