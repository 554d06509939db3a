"""A real Claude Code agent's life in local mode, over HTTP, offline.

The real Claude Code binary (``bin/just agents`` installs it into the cache), the
real agentapi and a real ``agentproxy serve``; only the model is a stand-in
(:mod:`tests.model_standin`, on 127.0.0.1), as the model's API is out of reach.
The agent starts in its prepared home without a dialog, takes its first message
once, runs a tool that writes a file in its work directory, keeps its
conversation through a SIGKILL, and never shows its key.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import stat
from pathlib import Path

from agentproxy.agenthome import CONFIG_FILE, key_tail
from tests.conversation import agent_said, call, exchanges, messages, wait_stable
from tests.model_standin import ANSWER_PREFIX, TOOL_DONE_PREFIX, ModelStandIn

from .serve_process import AGENT, SESSION, Server, ready, serving, state_file_holds, until, wait_blocking

KEY_VARIABLE = "AGENTPROXY_TEST_MODEL_KEY"
"""The proxy's variable that holds the model's key (``agents.claude.api_key_env``)."""
SLOW = 180.0
"""Claude Code takes seconds to start on a loaded machine; every wait allows for it."""


async def restored(client, api: str, before: list, timeout: float = SLOW) -> None:
    """Until the conversation begins with ``before`` again."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (now := exchanges(await messages(client, api)))[:len(before)] != before:
        assert asyncio.get_running_loop().time() < deadline, f"the conversation was not restored: {now}"
        await asyncio.sleep(0.2)


async def test_a_claude_agent_answers_runs_a_tool_and_keeps_its_conversation(tmp_path, ports, launcher, claude):
    key = "sk-ant-standin-" + secrets.token_hex(24)
    async with ModelStandIn() as model:
        server = Server(tmp_path / "data", ports, launcher)
        server.env.pop("ANTHROPIC_API_KEY", None)  # the key must come from the configured variable
        server.env.update({
            KEY_VARIABLE: key,
            "AGENTAPI_AGENTS_CLAUDE_API_KEY_ENV": KEY_VARIABLE,
            "AGENTAPI_AGENTS_CLAUDE_BASE_URL": model.url,
            # dontAsk: only tools allowed beforehand run, and no permission question is ever asked.
            "AGENTAPI_AGENTS_CLAUDE_PERMISSION_MODE": "dontAsk",
            "AGENTAPI_AGENTS_COMMANDS": json.dumps({"claude": ["claude", "--allowedTools", "Bash"]}),
            "AGENTAPI_AGENTS_DEFAULT_TYPE": "claude",
        })
        async with serving(server, tmp_path) as client:
            await server.start(client)
            async with client.post(f"{server.base}/sessions/{SESSION}/agents",
                                   json={"id": AGENT, "agent": "claude", "message": "hello claude"}) as response:
                assert response.status == 201, await response.text()
                assert key not in await response.text()
            agent = await until(client, server, ready, "the agent to be ready", timeout=SLOW)
            api = f"{server.route()}/api"
            work_dir = Path(agent["details"]["work_dir"])

            # The first message reached Claude Code (not a dialog), once, and its answer came back.
            first = await agent_said(client, api, ANSWER_PREFIX + "hello claude", timeout=SLOW)
            assert [text for role, text in exchanges(first) if role == "user"] == ["hello claude"]
            assert model.prompts().count("hello claude") == 1
            assert (await call(client, "GET", f"{api}/status"))["agent_type"] == "claude"

            # A tool call: the stand-in has Claude Code run Bash, which writes into the work directory.
            token = secrets.token_hex(8)
            await wait_stable(client, api, timeout=SLOW)
            sent = await call(client, "POST", f"{api}/message",
                              json={"content": f"please write-file proof.txt {token}", "type": "user"})
            assert sent["ok"] is True
            await agent_said(client, api, TOOL_DONE_PREFIX, timeout=SLOW)
            assert (work_dir / "proof.txt").read_text() == token
            bodies = [r.body for r in model.requests if r.path == "/v1/messages"]
            assert any("tool_result" in json.dumps(b) for b in bodies)
            assert {r.headers.get("x-api-key") for r in model.requests if r.path == "/v1/messages"} == {key}

            # The prepared home: private, the key approved by its tail, the work directory trusted.
            config_path = work_dir / ".agentproxy" / "home" / CONFIG_FILE
            assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
            config = json.loads(config_path.read_text())
            assert config["customApiKeyResponses"]["approved"] == [key_tail(key)]
            assert config["projects"][os.path.realpath(work_dir)]["hasTrustDialogAccepted"] is True

            # SIGKILL of agentapi: restarted with its conversation; the first message is not sent again.
            await asyncio.to_thread(wait_blocking, lambda: state_file_holds(work_dir, TOOL_DONE_PREFIX), "the state file",
                                    SLOW)
            # The screen goes on changing after the tool (Claude Code's Stop hook runs): the
            # conversation compared after the kill is the one of the finished turn, once saved.
            await wait_stable(client, api, timeout=SLOW)
            before = exchanges(await messages(client, api))
            await asyncio.to_thread(wait_blocking, lambda: state_file_holds(work_dir, before[-1][1]),
                                    "the state file to hold the finished turn", SLOW)
            os.kill(agent["details"]["pid"], signal.SIGKILL)
            restarted = await until(client, server, lambda a: a["restarts"] == 1 and ready(a), "the restart",
                                    timeout=SLOW)
            assert restarted["details"]["pid"] != agent["details"]["pid"]
            # agentapi restores the conversation once Claude Code is up again, seconds after it answers.
            await restored(client, api, before)
            await wait_stable(client, api, timeout=SLOW)
            await call(client, "POST", f"{api}/message", json={"content": "still there", "type": "user"})
            after = await agent_said(client, api, ANSWER_PREFIX + "still there", timeout=SLOW)
            assert [text for role, text in exchanges(after) if role == "user"].count("hello claude") == 1
            assert model.prompts().count("hello claude") == 1

            # The key shows nowhere: not in the agent's JSON, the proxy's log, its state or the agent's log.
            async with client.get(server.route()) as response:
                assert key not in await response.text()
            data = tmp_path / "data"
            for path in (server.log, data / "state.json", data / "logs" / f"{AGENT}.log"):
                assert key not in path.read_text(errors="replace"), path

            async with client.delete(f"{server.route()}?purge=true") as response:
                assert response.status == 200, await response.text()
            assert not work_dir.exists()
