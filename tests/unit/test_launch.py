"""The agent contract: how agentapi and the agent are started, the same for both modes."""

from __future__ import annotations

import pytest

from agentproxy.launch import INITIAL_PROMPT_VARIABLE, agent_launch, state_file
from agentproxy.render import render_agent

from ._support import by_kind, container, settings_with, spec_for


def test_arguments_environment_and_paths(settings):
    spec = spec_for(settings, agent_type="goose", env={"GIT_AUTHOR_NAME": "bot"}, message="Fix the tests")
    launch = agent_launch(spec, port=9001, work_dir="/data/work/a1")
    assert launch.argv == ("agentapi", "server", "--port", "9001", "--type", "goose",
                           "--state-file", "/data/work/a1/.agentproxy/agentapi-state.json", "--", "goose", "session")
    assert launch.state_file == state_file("/data/work/a1") and launch.work_dir == "/data/work/a1"
    assert launch.port == 9001
    assert launch.env == {"AGENTPROXY_AGENT_ID": "a1", "AGENTPROXY_SESSION": "s1", "AGENTPROXY_AGENT_TYPE": "goose",
                          "AGENTPROXY_AGENT_COMMAND": "goose session", INITIAL_PROMPT_VARIABLE: "Fix the tests",
                          "GIT_AUTHOR_NAME": "bot"}


def test_programs_resolved_by_the_launcher_keep_the_contract(settings):
    spec = spec_for(settings)
    launch = agent_launch(spec, port=1, work_dir="/w", program="/opt/agentapi",
                          command=["/usr/bin/python3", "-m", "agentproxy.demo_agent"])
    assert launch.argv[0] == "/opt/agentapi"
    assert launch.args[-4:] == ("--", "/usr/bin/python3", "-m", "agentproxy.demo_agent")
    assert launch.args[:7] == agent_launch(spec, port=1, work_dir="/w").args[:7]


@pytest.mark.parametrize("message", [None, ""])
def test_no_first_message_no_prompt(settings, message):
    launch = agent_launch(spec_for(settings, message=message), port=1, work_dir="/w")
    assert INITIAL_PROMPT_VARIABLE not in launch.env


def test_the_templates_render_the_same_contract():
    settings = settings_with("k8s_mode.work_dir=/home/agent/data")
    spec = spec_for(settings, message="hello", env={"LEVEL": "3"})
    objects = by_kind(render_agent(settings, spec))
    launch = agent_launch(spec, port=3284, work_dir="/home/agent/data")
    c = container(objects)
    # The container runs the same agentapi command behind the launcher, which saves the
    # conversation within state_save_interval of every change.
    argv = [*c["command"], *c["args"]]
    assert argv[:3] == ["python3", "-m", "agentproxy.launcher"]
    assert argv[argv.index("--") + 1:] == list(launch.argv)
    assert argv[argv.index("--save-interval") + 1] == f"{settings.local_mode.state_save_interval:g}"
    assert objects["ConfigMap"]["data"] == dict(launch.env)
    assert c["workingDir"] == launch.work_dir
    assert launch.state_file.startswith(c["volumeMounts"][0]["mountPath"] + "/")
    assert c["ports"][0]["containerPort"] == launch.port == objects["Service"]["spec"]["ports"][0]["port"]
    probe = c["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["httpHeaders"]) == (launch.status_path, [{"name": "Host", "value": launch.host}])


def test_the_pod_is_ready_only_once_its_conversation_is_back():
    settings = settings_with("k8s_mode.work_dir=/home/agent/data")
    spec = spec_for(settings)
    c = container(by_kind(render_agent(settings, spec)))
    launch = agent_launch(spec, port=3284, work_dir="/home/agent/data")
    assert c["startupProbe"]["exec"]["command"] == list(launch.restored_check) == [
        "python3", "-m", "agentproxy.restore", "--port", "3284", "--state-file", launch.state_file,
        "--host", launch.host]
