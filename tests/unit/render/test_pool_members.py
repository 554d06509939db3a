"""The manifests of a warm pool member and of the agent a claim makes of it (k8s mode): the
member waits for its binding with a token only its pod mounts, and the claimed agent keeps the
member's pod template, claim template and PVC, so that a claim restarts nothing."""

from __future__ import annotations

import dataclasses
import json

from agentproxy import naming
from agentproxy.launcher import BOUND_VARIABLE, TOKEN_VARIABLE
from agentproxy.pools import LABEL_POOL, LABEL_SHAPE, POOL_SESSION
from agentproxy.render import BINDING_DIR, BINDING_PORT, binding_secret_name, member_of, member_shape, render_agent

from .._support import by_kind, container, spec_for


def member_spec(settings, agent_id="m1"):
    return dataclasses.replace(spec_for(settings, agent_id=agent_id, session=POOL_SESSION), pool="echo")


def claimed_spec(settings, agent_id="m1"):
    owner = spec_for(settings, agent_id=agent_id, session="s1", env={"GREETING": "hi"}, message="hello",
                     owner="ann")
    return dataclasses.replace(owner, pool="echo")


def test_a_member_is_labelled_as_one_of_its_pool_and_waits_for_its_binding(settings):
    spec = member_spec(settings)
    objects = by_kind(render_agent(settings, spec))
    for kind in ("ConfigMap", "StatefulSet", "Service"):
        labels = objects[kind]["metadata"]["labels"]
        assert labels[LABEL_POOL] == "echo" and labels[LABEL_SHAPE] == member_shape(spec), kind
    sts = objects["StatefulSet"]
    # The pod, its volume and its claim template carry no pool label: a claim keeps them as they are.
    assert LABEL_POOL not in sts["spec"]["template"]["metadata"]["labels"]
    assert LABEL_POOL not in sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"]
    assert LABEL_POOL not in objects["PersistentVolumeClaim"]["metadata"]["labels"]
    args = container(objects)["args"]
    bind = args.index("--bind")
    assert args[bind + 1] == f"0.0.0.0:{BINDING_PORT}"
    assert args[args.index("--token-file") + 1] == f"{BINDING_DIR}/token"
    assert args.index("--") > bind  # the launcher's option, not agentapi's
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "agentproxy-binding")
    assert volume["secret"]["secretName"] == binding_secret_name("m1") == "agent-m1-binding"
    mount = next(m for m in container(objects)["volumeMounts"] if m["name"] == "agentproxy-binding")
    assert mount == {"name": "agentproxy-binding", "mountPath": BINDING_DIR, "readOnly": True}
    # Its start is done once it waits: the startup probe passes while the launcher waits there.
    probe = container(objects)["startupProbe"]["exec"]["command"]
    assert probe[-2:] == ["--waiting-port", str(BINDING_PORT)]
    assert BOUND_VARIABLE not in objects["ConfigMap"]["data"]


def test_no_token_is_rendered(settings):
    """The token is written into the member's Secret by the proxy: neither a ConfigMap nor any
    rendered object holds it, nor names its variable with a value."""
    text = json.dumps(render_agent(settings, member_spec(settings)))
    assert TOKEN_VARIABLE not in text
    assert "Secret" not in {o["kind"] for o in render_agent(settings, member_spec(settings))}


def test_a_claim_keeps_the_pod_the_claim_template_and_the_volume_as_the_member_made_them(settings):
    member = by_kind(render_agent(settings, member_spec(settings)))
    claimed = by_kind(render_agent(settings, claimed_spec(settings)))
    assert claimed["StatefulSet"]["spec"]["template"] == member["StatefulSet"]["spec"]["template"]
    assert claimed["StatefulSet"]["spec"]["volumeClaimTemplates"] == \
        member["StatefulSet"]["spec"]["volumeClaimTemplates"]
    assert claimed["PersistentVolumeClaim"] == member["PersistentVolumeClaim"]
    assert claimed["StatefulSet"]["spec"]["selector"] == member["StatefulSet"]["spec"]["selector"]


def test_a_claimed_agent_is_its_owners_and_starts_bound_after_a_restart(settings):
    claimed = by_kind(render_agent(settings, claimed_spec(settings)))
    for kind in ("ConfigMap", "StatefulSet", "Service"):
        labels = claimed[kind]["metadata"]["labels"]
        assert labels[naming.LABEL_SESSION] == "s1" and LABEL_POOL not in labels and LABEL_SHAPE not in labels
    data = claimed["ConfigMap"]["data"]
    # What a container that restarts after the claim starts with: the owner's variables, its first
    # message, and the word that it is bound (it does not wait for a binding again).
    assert data["GREETING"] == "hi" and data["AGENTAPI_INITIAL_PROMPT"] == "hello"
    assert data["AGENTPROXY_SESSION"] == "s1" and data[BOUND_VARIABLE] == "1"
    assert json.loads(claimed["ConfigMap"]["metadata"]["annotations"]["agentproxy.io/spec"])["pool"] == "echo"


def test_the_member_of_a_claimed_agent(settings):
    assert member_of(claimed_spec(settings)) == member_spec(settings)
    assert member_shape(claimed_spec(settings)) == member_shape(member_spec(settings))


def test_a_cold_agent_is_rendered_as_before(settings):
    cold = by_kind(render_agent(settings, spec_for(settings, session="s1")))
    assert cold["StatefulSet"]["spec"]["template"]["metadata"]["labels"] == cold["StatefulSet"]["metadata"]["labels"]
    assert "--bind" not in container(cold)["args"]
    assert "volumes" not in cold["StatefulSet"]["spec"]["template"]["spec"]
    assert "pool" not in json.loads(cold["ConfigMap"]["metadata"]["annotations"]["agentproxy.io/spec"])


def test_a_prestarted_members_launcher_runs_its_agent_at_once_and_is_labelled_apart(settings):
    """``prestart``: the launcher starts agentapi before the binding; such members are labelled
    with a shape of their own, so that turning it on or off replaces the others."""
    plain = by_kind(render_agent(settings, member_spec(settings)))
    settings.pools = [{"name": "echo", "size": 1, "agent": "echo", "prestart": True}]
    early = by_kind(render_agent(settings, member_spec(settings)))
    args = container(early)["args"]
    assert "--prestart" in args[:args.index("--")] and "--prestart" not in container(plain)["args"]
    assert early["StatefulSet"]["metadata"]["labels"][LABEL_SHAPE] != plain["StatefulSet"]["metadata"]["labels"][LABEL_SHAPE]
    # The claimed agent keeps its member's container as it was: the claim restarts nothing.
    claimed = by_kind(render_agent(settings, claimed_spec(settings)))
    assert container(claimed)["args"] == args
    assert claimed["ConfigMap"]["data"][BOUND_VARIABLE] == "1"
