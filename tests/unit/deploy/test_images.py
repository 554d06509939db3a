"""The images deploy/ runs: the Dockerfile's two targets and the images the test
environment builds without Docker agree on user, entry point and port, and the
Deployment runs the proxy as that user on that port."""

from __future__ import annotations

import re
import sys

from .manifests import DEPLOY, ROOT, by_key, kustomize

sys.path.insert(0, str(ROOT / "testenv"))
import image


def _stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if match := re.match(r"FROM \S+ AS (\S+)", line):
            current = match.group(1)
            stages[current] = []
        elif current and line and not line.startswith("#"):
            stages[current].append(line)
    return stages


def test_the_dockerfile_has_a_proxy_target_and_builds_the_agent_by_default():
    stages = _stages()
    assert list(stages)[-1] == "agent"  # `docker build .` still gives the agent image
    proxy, agent = stages["proxy"], stages["agent"]
    assert f"USER {image.PROXY_UID}:{image.PROXY_UID}" in proxy and 'ENTRYPOINT ["agentproxy"]' in proxy
    assert 'CMD ["serve"]' in proxy and "EXPOSE 8080" in proxy
    assert f"USER {image.AGENT_UID}:{image.AGENT_UID}" in agent and 'ENTRYPOINT ["agentapi"]' in agent


def test_the_deployment_runs_the_proxy_image_as_its_user_on_its_port():
    deployment = by_key(kustomize(DEPLOY))[("Deployment", "agentapi-proxy")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == image.PROXY_REF.rsplit("/", 1)[1]  # docker.io/library/ is implied
    assert pod["securityContext"]["runAsUser"] == image.PROXY_UID
    assert container["args"][0] == "serve" and container["ports"] == [{"name": "http", "containerPort": 8080}]
