"""The tests' stand-in for the Messages API answers as the Claude Code tests expect it to."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.model_standin import ANSWER_PREFIX, TOOL_DONE_PREFIX, ModelStandIn, last_user_turn, reply_to

BASH = [{"name": "Bash", "input_schema": {"type": "object"}}]


def test_the_answer_follows_the_last_user_turn():
    body = {"messages": [
        {"role": "user", "content": "write-file old.txt x"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>ignore</system-reminder>"},
                                     {"type": "text", "text": "hello   there"}]}], "tools": BASH}
    assert last_user_turn(body) == ("hello   there", None)
    assert reply_to(body) == [{"type": "text", "text": ANSWER_PREFIX + "hello there"}]


def test_a_write_file_prompt_is_a_bash_call_and_its_result_a_final_text():
    asked: dict[str, Any] = {"messages": [{"role": "user", "content": "please write-file proof.txt abc"}], "tools": BASH}
    [call] = reply_to(asked)
    assert call["type"] == "tool_use" and call["name"] == "Bash"
    assert call["input"]["command"] == "printf %s abc > proof.txt"
    # Without a Bash tool offered there is nothing to call: plain text.
    assert reply_to({**asked, "tools": []})[0]["type"] == "text"
    done = {"messages": [*asked["messages"], {"role": "assistant", "content": [call]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
                                                       "content": [{"type": "text", "text": "ok"}]}]}]}
    assert reply_to(done) == [{"type": "text", "text": TOOL_DONE_PREFIX + "ok"}]


async def test_it_streams_records_and_listens_on_loopback():
    async with ModelStandIn() as model, aiohttp.ClientSession() as client:
        assert model.url.startswith("http://127.0.0.1:")
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "write-file a.txt b"}],
                "tools": BASH}
        async with client.post(f"{model.url}/v1/messages?beta=true", json=body) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = [json.loads(line[6:]) for line in (await response.text()).splitlines()
                      if line.startswith("data: ")]
        assert [e["type"] for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                               "content_block_stop", "message_delta", "message_stop"]
        assert json.loads(events[2]["delta"]["partial_json"])["command"] == "printf %s b > a.txt"
        assert events[4]["delta"]["stop_reason"] == "tool_use"
        async with client.post(f"{model.url}/v1/messages", json={**body, "stream": False,
                                                                 "messages": [{"role": "user", "content": "hi"}]},
                               headers={"x-api-key": "k1"}) as response:
            answer = await response.json()
        assert answer["content"] == [{"type": "text", "text": ANSWER_PREFIX + "hi"}]
        assert answer["stop_reason"] == "end_turn"
        async with client.get(f"{model.url}/v1/models") as response:
            assert response.status == 404
        assert [(r.method, r.path) for r in model.requests] == [("POST", "/v1/messages"), ("POST", "/v1/messages"),
                                                                ("GET", "/v1/models")]
        assert model.requests[0].query == {"beta": "true"} and model.requests[1].headers["x-api-key"] == "k1"
        assert model.prompts() == ["write-file a.txt b", "hi"]
