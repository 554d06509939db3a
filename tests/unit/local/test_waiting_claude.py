"""``waiting_input`` of a real Claude Code agent in local mode, offline: asked to run a tool in
permission mode ``default``, Claude Code asks its user; its ``Notification`` hook (set in the
prepared home) tells agentproxy, whose agent JSON then says ``waiting_input`` with the
question. Answering runs the tool, and the agent is ``ready`` again, the question gone. The
model is the tests' stand-in (:mod:`tests.model_standin`): the model's API is out of reach."""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

from tests.conversation import agent_said, call, wait_stable
from tests.model_standin import TOOL_DONE_PREFIX, ModelStandIn

from .serve_process import AGENT, SESSION, Server, ready, serving, until

SLOW = 180.0
"""Claude Code takes seconds to start on a loaded machine; every wait allows for it."""


def waiting(agent: dict) -> bool:
    return agent["status"] == "waiting_input"


async def test_a_permission_question_is_waiting_input_until_it_is_answered(tmp_path, ports, launcher, claude):
    async with ModelStandIn() as model:
        server = Server(tmp_path / "data", ports, launcher)
        server.env.update({
            "AGENTPROXY_TEST_MODEL_KEY": "sk-ant-standin-" + secrets.token_hex(24),
            "AGENTAPI_AGENTS_CLAUDE_API_KEY_ENV": "AGENTPROXY_TEST_MODEL_KEY",
            "AGENTAPI_AGENTS_CLAUDE_BASE_URL": model.url,
            # default: Claude Code asks before it runs Bash.
            "AGENTAPI_AGENTS_CLAUDE_PERMISSION_MODE": "default",
            "AGENTAPI_AGENTS_COMMANDS": json.dumps({"claude": ["claude"]}),
            "AGENTAPI_AGENTS_DEFAULT_TYPE": "claude",
        })
        async with serving(server, tmp_path) as client:
            await server.start(client)
            async with client.post(f"{server.base}/sessions/{SESSION}/agents",
                                   json={"id": AGENT, "agent": "claude"}) as response:
                assert response.status == 201, await response.text()
            agent = await until(client, server, ready, "the agent to be ready", timeout=SLOW)
            assert agent["question"] is None
            api = f"{server.route()}/api"
            work_dir = Path(agent["details"]["work_dir"])
            settings = json.loads((work_dir / ".agentproxy" / "home" / ".claude" / "settings.json").read_text())
            assert "agentproxy.waiting" in json.dumps(settings["hooks"]["Notification"])

            token = secrets.token_hex(8)
            await wait_stable(client, api, timeout=SLOW)
            asked = time.monotonic()
            await call(client, "POST", f"{api}/message",
                       json={"content": f"please write-file proof.txt {token}", "type": "user"})
            agent = await until(client, server, waiting, "the permission question", timeout=SLOW)
            seen = time.time()
            hooked = json.loads((work_dir / ".agentproxy" / "waiting.json").read_text())["at"]
            print(f"waiting_input {time.monotonic() - asked:.2f} s after the message, "
                  f"{seen - hooked:.2f} s after the hook")
            assert "Bash" in agent["question"] or "permission" in agent["question"].lower(), agent
            assert not (work_dir / "proof.txt").exists()
            async with client.get(f"{server.base}/agents?status=waiting_input") as response:
                assert [a["id"] for a in (await response.json())["agents"]] == [AGENT]

            # Enter takes the dialog's first choice, yes: the tool runs, and the agent is ready again.
            await call(client, "POST", f"{api}/message", json={"content": "\r", "type": "raw"})
            await agent_said(client, api, TOOL_DONE_PREFIX, timeout=SLOW)
            assert (work_dir / "proof.txt").read_text() == token
            agent = await until(client, server, lambda a: a["status"] == "ready" and a["question"] is None,
                                "ready again", timeout=SLOW)
            async with client.delete(f"{server.route()}?purge=true") as response:
                assert response.status == 200, await response.text()
