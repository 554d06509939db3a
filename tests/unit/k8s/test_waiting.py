"""``waiting_input`` in k8s mode, without a cluster: what a Claude agent's pod is given (a
projected token for the proxy's audience, the report URL, hooks that report), nothing secret
rendered; which pod a token names (the API server's TokenReview answer read, refusals);
the question kept on the StatefulSet bound to the pod that asked; and the hook itself, run as
a real process reporting to a real HTTP server on 127.0.0.1. The TokenReview answers here are
written out by hand, in the shape the API server gives (the e2e test asks the real one)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web

from agentproxy import waiting
from agentproxy.agenthome import SETTINGS_FILE
from agentproxy.backends.base import Unavailable
from agentproxy.backends.k8s import questions
from agentproxy.backends.k8s.model import AgentObjects, agent_state
from agentproxy.render import dump_yaml, render_agent, render_rbac

from .._support import by_kind, container, settings_with, spec_for

URL = "http://agentproxy.agents.svc:8080"
WAITING = (f"k8s_mode.waiting_url={URL}", "k8s_mode.secret_name=model-credentials")


def _rendered(*overrides: str, agent_type: str = "claude"):
    settings = settings_with(*WAITING, *overrides)
    return by_kind(render_agent(settings, spec_for(settings, agent_type=agent_type)))


# --- what the pod is given -------------------------------------------------------------------

def test_a_claude_pod_gets_its_own_token_for_the_proxy_and_hooks_that_report():
    objects = _rendered()
    pod = objects["StatefulSet"]["spec"]["template"]["spec"]
    c = container(objects)
    assert pod["volumes"] == [{"name": "agentproxy-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "agentproxy", "expirationSeconds": 3600, "path": "waiting-token"}}]}}]
    assert {"name": "agentproxy-token", "mountPath": "/var/run/agentproxy", "readOnly": True} in c["volumeMounts"]
    assert pod["automountServiceAccountToken"] is False  # the API token is still not mounted
    assert "--waiting-hooks" in c["args"][:c["args"].index("--")]
    data = objects["ConfigMap"]["data"]
    assert data[waiting.URL_VARIABLE] == URL + "/hooks/waiting"
    assert data[waiting.TOKEN_VARIABLE] == "/var/run/agentproxy/waiting-token"


def test_the_audience_is_a_setting_and_other_agents_or_no_url_get_nothing():
    pod = _rendered("k8s_mode.waiting_audience=proxy.example")["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "proxy.example"
    for objects in (_rendered(agent_type="echo"),
                    by_kind(render_agent(s := settings_with("k8s_mode.secret_name=m"), spec_for(s, agent_type="claude")))):
        assert "volumes" not in objects["StatefulSet"]["spec"]["template"]["spec"]
        assert waiting.URL_VARIABLE not in objects["ConfigMap"]["data"]
        assert "--waiting-hooks" not in container(objects)["args"]


def test_a_bad_url_or_audience_is_refused_naming_the_setting():
    from agentproxy.settings import SettingsError
    with pytest.raises(SettingsError, match="k8s_mode.waiting_url"):
        settings_with("k8s_mode.waiting_url=not a url")
    with pytest.raises(SettingsError, match="k8s_mode.waiting_audience"):
        settings_with("k8s_mode.waiting_audience=")


def test_the_proxy_may_review_tokens_only_when_reports_are_on():
    kinds = [o["kind"] for o in render_rbac(settings_with("k8s_mode.namespace=agents"))]
    assert "ClusterRoleBinding" not in kinds
    binding = [o for o in render_rbac(settings_with("k8s_mode.namespace=agents", f"k8s_mode.waiting_url={URL}"))
               if o["kind"] == "ClusterRoleBinding"]
    assert len(binding) == 1
    assert binding[0]["roleRef"]["name"] == "system:auth-delegator"
    assert binding[0]["subjects"] == [{"kind": "ServiceAccount", "name": "agentproxy", "namespace": "agents"}]
    assert binding[0]["metadata"]["name"] == "agentproxy-agents-token-review"


def test_the_container_command_prepares_a_home_whose_hooks_report(tmp_path):
    """The rendered command, run for real: the home's hooks run agentproxy.waiting."""
    c = container(_rendered())
    args = c["args"]
    work = tmp_path / "work"
    work.mkdir()
    args = [str(work) if a == c["workingDir"] else a for a in args]
    # The launcher prepares the home, then runs the command: here one that prints the home.
    prepare = [*args[:args.index("--")], "--", "sh", "-c", 'echo "$HOME"']
    done = subprocess.run([sys.executable, *prepare], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ANTHROPIC_API_KEY": "sk-ant-test-" + "x" * 30})
    assert done.returncode == 0, done.stderr
    settings = json.loads((Path(done.stdout.strip()) / SETTINGS_FILE).read_text())
    for event in waiting.HOOK_EVENTS:
        assert "-m agentproxy.waiting --work-dir" in json.dumps(settings["hooks"][event])


# --- which pod a token names --------------------------------------------------------------------

def jwt(payload: object) -> str:
    """A token of the shape the API server issues (the signature is the API server's to check)."""
    part = lambda data: base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{part({'alg': 'RS256'})}.{part(payload)}.c2lnbmF0dXJl"


def pod_token(name: str = "agent-a1-0", aud: object = ("agentproxy",)) -> str:
    return jwt({"aud": list(aud) if isinstance(aud, tuple) else aud,
                "kubernetes.io": {"namespace": "agents", "pod": {"name": name, "uid": "u1"}}})


def test_a_token_is_read_without_trust_only_to_spare_the_api_server():
    assert questions.claimed_pod(pod_token(), "agentproxy") == "agent-a1-0"
    assert questions.claimed_pod(pod_token(aud="agentproxy"), "agentproxy") == "agent-a1-0"
    assert questions.claimed_pod(pod_token(aud=("https://kubernetes.default.svc",)), "agentproxy") is None
    assert questions.claimed_pod(jwt({"aud": ["agentproxy"]}), "agentproxy") is None  # bound to no pod
    for junk in ("", "a.b", "a.!!!.c", "a." + "x" * 20000 + ".c", jwt([1, 2]), jwt({"kubernetes.io": 3})):
        assert questions.claimed_pod(junk, "agentproxy") is None


def review(authenticated=True, namespace="agents", pod=("agent-a1-0", "u1"), error=None) -> dict:
    extra = {questions.POD_NAME_EXTRA: [pod[0]], questions.POD_UID_EXTRA: [pod[1]]} if pod else {}
    status: dict = {"authenticated": authenticated}
    if authenticated:
        status["user"] = {"username": f"system:serviceaccount:{namespace}:default", "extra": extra}
    if error:
        status["error"] = error
    return {"kind": "TokenReview", "status": status}


def test_the_review_names_the_pod_or_refuses():
    assert questions.pod_of_review(review(), "agents") == questions.PodIdentity("agents", "agent-a1-0", "u1")
    for answer, status in ((review(authenticated=False, error="token has expired"), 401),
                           (review(pod=None), 403), (review(namespace="other"), 403)):
        with pytest.raises(questions.Refused) as refused:
            questions.pod_of_review(answer, "agents")
        assert refused.value.http_status == status
    with pytest.raises(questions.Refused, match="expired"):
        questions.pod_of_review(review(authenticated=False, error="token has expired"), "agents")


async def test_verdicts_are_kept_for_a_while_and_implausible_tokens_never_reviewed():
    asked: list[dict] = []
    now = [0.0]

    async def api_server(body: dict) -> dict:
        asked.append(body)
        return review(authenticated=body["spec"]["token"] != bad)
    reviews = questions.TokenReviews(api_server, "agents", "agentproxy", clock=lambda: now[0])
    good, bad = pod_token(), pod_token() + "x"
    assert await reviews.pod_of(good, lambda name: True) == questions.PodIdentity("agents", "agent-a1-0", "u1")
    assert await reviews.pod_of(good, lambda name: True)
    assert len(asked) == 1 and asked[0]["spec"] == {"token": good, "audiences": ["agentproxy"]}
    for _ in range(2):
        with pytest.raises(questions.Refused):
            await reviews.pod_of(bad, lambda name: True)
    assert len(asked) == 2  # a refusal is kept too
    now[0] += questions.REVIEW_TTL + 1
    await reviews.pod_of(good, lambda name: True)
    assert len(asked) == 3
    agent_pods = {"agent-a1-0"}
    for token in (pod_token(aud=("other",)), pod_token(name="agent-zz-0"), "garbage"):
        with pytest.raises(questions.Refused):
            await reviews.pod_of(token, agent_pods.__contains__)
    assert len(asked) == 3 and reviews.reviews == 3


# --- the question, kept on the StatefulSet --------------------------------------------------------

def _objects(annotation: str | None, pod_uid: str = "u1") -> AgentObjects:
    sts = {"metadata": {"name": "agent-a1", "uid": "s", "annotations": {
        questions.QUESTION_ANNOTATION: annotation} if annotation else {}},
        "spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    pod = {"metadata": {"name": "agent-a1-0", "uid": pod_uid},
           "status": {"phase": "Running", "podIP": "10.0.0.5",
                      "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
                      "containerStatuses": [{"name": "agentapi", "ready": True, "started": True,
                                             "state": {"running": {}}}]}}
    return AgentObjects(claim=None, statefulset=sts, pod=pod, pvc=None)


def test_the_question_is_shown_while_the_pod_that_asked_is_the_agents():
    settings = settings_with()
    spec = spec_for(settings, agent_type="claude")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    value = questions.question_annotation("Claude needs\n your permission to use Bash", "u1", when)
    assert value is not None and json.loads(value)["question"] == "Claude needs your permission to use Bash"
    state = agent_state(spec, _objects(value), namespace="agents", pod_address="pod_ip")
    assert (state.status.value, state.shown_status.value) == ("ready", "waiting_input")
    assert state.question == "Claude needs your permission to use Bash"
    # The pod that asked is gone (a restart): its question is no longer the agent's.
    assert agent_state(spec, _objects(value, pod_uid="u2"), namespace="agents", pod_address="pod_ip").question is None
    for broken in ("not json", json.dumps(["u1"]), json.dumps({"pod": "u1", "question": 5})):
        assert agent_state(spec, _objects(broken), namespace="agents", pod_address="pod_ip").question is None
    assert questions.question_annotation(None, "u1", when) is None
    assert questions.question_patch(None) == {"metadata": {"annotations": {questions.QUESTION_ANNOTATION: None}}}
    assert len(json.loads(questions.question_annotation("q" * 5000, "u1", when) or "")["question"]) == 2000


def test_a_report_body_is_a_question_or_null():
    assert waiting.parse_report({"question": "may I?"}) == "may I?"
    assert waiting.parse_report({"question": None}) is None
    assert waiting.parse_report({"question": ""}) is None
    bad: object
    for bad in ({}, [], {"question": 3}, "q"):
        with pytest.raises(ValueError):
            waiting.parse_report(bad)


# --- the hook, reporting ------------------------------------------------------------------------

def test_only_a_change_is_reported(tmp_path):
    ask = {"hook_event_name": "Notification", "notification_type": "permission_prompt",
           "message": "Claude needs your permission to use Bash"}
    assert waiting.handle({"hook_event_name": "PostToolUse"}, str(tmp_path)) is None  # nothing pending
    assert waiting.handle(ask, str(tmp_path)) == ("Claude needs your permission to use Bash",)
    assert waiting.handle({"hook_event_name": "Notification", "notification_type": "idle_prompt",
                           "message": "Claude is waiting for your input"}, str(tmp_path)) is None
    assert waiting.handle({"hook_event_name": "PostToolUse"}, str(tmp_path)) == (None,)
    assert waiting.handle({"hook_event_name": "Stop"}, str(tmp_path)) is None


def _run_hook(event: dict, work_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agentproxy.waiting", "--work-dir", str(work_dir)],
                          input=json.dumps(event), capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


async def test_the_hook_reports_to_the_proxy_with_the_pods_token(tmp_path):
    received: list[tuple[str, dict]] = []

    async def hooks(request: web.Request) -> web.Response:
        received.append((request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"status": "waiting_input"})
    app = web.Application()
    app.router.add_post("/hooks/waiting", hooks)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        token_file = tmp_path / "waiting-token"
        token_file.write_text("first-token\n")
        env = {waiting.URL_VARIABLE: f"http://127.0.0.1:{port}/hooks/waiting",
               waiting.TOKEN_VARIABLE: str(token_file)}
        ask = {"hook_event_name": "Notification", "notification_type": "permission_prompt",
               "message": "Claude needs your permission to use Bash"}
        done = await asyncio.to_thread(_run_hook, ask, tmp_path, env)
        assert (done.returncode, done.stdout) == (0, "")
        token_file.write_text("renewed-token\n")  # the kubelet renewed it: the next report uses the new one
        await asyncio.to_thread(_run_hook, {"hook_event_name": "PostToolUse"}, tmp_path, env)
        await asyncio.to_thread(_run_hook, {"hook_event_name": "PostToolUse"}, tmp_path, env)  # nothing pending
        assert received == [("Bearer first-token", {"question": "Claude needs your permission to use Bash"}),
                            ("Bearer renewed-token", {"question": None})]
    finally:
        await runner.cleanup()
    # The proxy is gone: the hook still exits 0 and prints nothing (never in the agent's way).
    done = await asyncio.to_thread(_run_hook, ask, tmp_path, env)
    assert (done.returncode, done.stdout) == (0, "")
    assert waiting.read_question(str(tmp_path)) == "Claude needs your permission to use Bash"


def test_without_the_variables_nothing_is_reported(tmp_path):
    assert waiting.report("q", environ={}) is False
    assert waiting.report("q", environ={waiting.URL_VARIABLE: "http://127.0.0.1:1/x"}) is False


def test_nothing_secret_is_rendered():
    text = dump_yaml(list(_rendered().values()))
    assert "serviceAccountToken" in text and "token:" not in text.replace("serviceAccountToken:", "")


async def test_reviews_under_way_are_bounded():
    gate = asyncio.Event()

    async def slow_api_server(body: dict) -> dict:
        await gate.wait()
        return review()
    reviews = questions.TokenReviews(slow_api_server, "agents", "agentproxy")
    made_up = [jwt({"aud": ["agentproxy"], "kubernetes.io": {"pod": {"name": "agent-a1-0"}}, "n": n})
               for n in range(questions.MAX_PENDING + 1)]
    pending = [asyncio.ensure_future(reviews.pod_of(t, lambda name: True)) for t in made_up[:-1]]
    await asyncio.sleep(0)
    with pytest.raises(Unavailable):
        await reviews.pod_of(made_up[-1], lambda name: True)
    gate.set()
    assert len(await asyncio.gather(*pending)) == questions.MAX_PENDING
    assert await reviews.pod_of(made_up[-1], lambda name: True)  # room again
