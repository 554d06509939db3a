"""Agent and session id rules, generated ids, object names and labels."""

from __future__ import annotations

import pytest

from agentproxy import naming
from agentproxy.naming import (
    AGENT_ID_MAX,
    generate_agent_id,
    is_dns_label,
    is_dns_subdomain,
    is_valid_agent_id,
    is_valid_session_id,
)


def test_agent_id_length_limit():
    assert AGENT_ID_MAX == 46
    assert is_valid_agent_id("a" * 46)
    assert not is_valid_agent_id("a" * 47)
    # The longest id still gives names Kubernetes accepts.
    names = naming.object_names("a" * 46)
    assert len(names["statefulset"]) == 52
    assert all(len(name) <= 63 for name in names.values())


@pytest.mark.parametrize("agent_id", ["a", "a1", "0", "agent-1", "x-y-z", "9abc"])
def test_valid_agent_ids(agent_id):
    assert is_valid_agent_id(agent_id)


@pytest.mark.parametrize("agent_id", [
    "", "A1", "aB", "a_b", "-a", "a-", "a.b", "a b", "ä", "a\n", "\na", "a/b", "a:b",
])
def test_invalid_agent_ids(agent_id):
    assert not is_valid_agent_id(agent_id)


def test_non_strings_are_not_ids():
    for value in (None, 1, b"a1", ["a1"]):
        assert not is_valid_agent_id(value)
        assert not is_valid_session_id(value)


def test_generated_ids_are_valid_and_different():
    ids = [generate_agent_id() for _ in range(200)]
    assert all(is_valid_agent_id(i) for i in ids)
    assert all(i[0].isalpha() and len(i) == 8 for i in ids)
    assert len(set(ids)) == len(ids)


def test_session_id_rules():
    assert is_valid_session_id("s" * 63)
    assert not is_valid_session_id("s" * 64)
    for ok in ("s", "Session_1", "a.b-c_D", "1"):
        assert is_valid_session_id(ok), ok
    for bad in ("", "_s", "s_", ".s", "s.", "s s", "s:1", "s/1", "s\n", "s#", "é"):
        assert not is_valid_session_id(bad), bad


def test_dns_label_and_subdomain():
    assert is_dns_label("a" * 63) and not is_dns_label("a" * 64)
    assert not is_dns_label("a.b") and is_dns_subdomain("a.b")
    assert is_dns_subdomain("agent-credentials")
    assert not is_dns_subdomain("a..b") and not is_dns_subdomain("a.") and not is_dns_subdomain("A")
    assert not is_dns_subdomain("a" * 254)
    assert not is_dns_subdomain("creds\n")


def test_object_names():
    assert naming.statefulset_name("x1") == "agent-x1"
    assert naming.headless_service_name("x1") == "agent-x1-headless"
    assert naming.configmap_name("x1") == "agent-x1-config"
    assert naming.pvc_name("x1") == "data-agent-x1-0"
    assert naming.pod_name("x1") == "agent-x1-0"
    assert naming.object_names("x1") == {
        "statefulset": "agent-x1",
        "service": "agent-x1-headless",
        "configmap": "agent-x1-config",
        "pod": "agent-x1-0",
        "pvc": "data-agent-x1-0",
    }


def test_standard_labels():
    assert naming.standard_labels("x1", "sess") == {
        "app.kubernetes.io/name": "agentapi",
        "app.kubernetes.io/instance": "agent-x1",
        "app.kubernetes.io/component": "agent",
        "app.kubernetes.io/managed-by": "agentproxy",
        "agentproxy.io/agent-id": "x1",
        "agentproxy.io/session": "sess",
    }
    assert naming.standard_labels("x1", "sess", "proxy")["app.kubernetes.io/component"] == "proxy"


def test_selector_labels_are_a_subset_of_the_standard_labels():
    selector = naming.selector_labels("x1")
    labels = naming.standard_labels("x1", "any-session")
    assert selector == {"app.kubernetes.io/instance": "agent-x1", "agentproxy.io/agent-id": "x1"}
    assert selector.items() <= labels.items()
    assert "agentproxy.io/session" not in selector  # the selector may never change
    assert naming.MANAGED_SELECTOR == "app.kubernetes.io/managed-by=agentproxy"
