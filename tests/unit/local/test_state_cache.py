"""A local agent's state is made once per change: its supervisor hands out the same state
object while nothing it is made of changed, so the API's JSON of it is made once too; and any
change, even a field written without a notification, is in the very next list.

Real agentapi and a real agent program; the changes are made to the supervisor's fields as
the supervision loop and the monitor make them (a sample, a disk size, a new status, ...)."""

from __future__ import annotations

import inspect
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from agentproxy.api.listing import AgentTexts
from agentproxy.api.model import agent_json
from agentproxy.backends.base import AgentStatus
from agentproxy.backends.local.process import TreeSample
from agentproxy.backends.local.supervisor import Supervisor

from .support import spec, wait_for, wait_ready


async def listed(backend: Any, texts: AgentTexts) -> dict[str, dict[str, Any]]:
    """The agents of the next ``GET /agents`` body, by id, as the route makes it."""
    body = json.loads(texts.list_body(await backend.list(), complete=True))
    return {agent["id"]: agent for agent in body["agents"]}


def fresh(supervisor: Supervisor) -> dict[str, Any]:
    """The agent's JSON made afresh from its fields, bypassing every cache."""
    return json.loads(json.dumps(agent_json(supervisor.build_state())))


async def test_an_unchanged_agent_keeps_its_state_object_and_its_text(backend, settings):
    await backend.create(spec(settings, "a1"))
    await wait_ready(backend, "a1")
    # Once sampled, nothing changes until the next sample: the same object, the same bytes.
    await wait_for(backend, "a1", lambda s: s.details["rss_bytes"] and s.details["work_dir_bytes"] is not None)
    supervisor = backend._agents["a1"]
    supervisor.observe(supervisor.process.identity, supervisor.sample)  # the same sample again
    texts = AgentTexts()
    first = backend._state("a1")
    text = texts.text(first)
    assert backend._state("a1") is first and (await backend.get("s1", "a1")) is first
    assert texts.text(backend._state("a1")) is text
    assert backend._state("a1") == supervisor.build_state()


async def test_every_change_is_in_the_next_list(backend, settings):
    await backend.create(spec(settings, "a1"))
    await backend.create(spec(settings, "b1", session="s2"))
    await wait_ready(backend, "a1")
    await wait_ready(backend, "b1", session="s2")
    supervisor = backend._agents["a1"]
    texts = AgentTexts()
    await listed(backend, texts)  # every text is cached from here on
    later = datetime.now(UTC) + timedelta(hours=1)

    def sample() -> None:
        members = supervisor.sample.members if supervisor.sample else ()
        supervisor.observe(supervisor.process.identity, TreeSample(rss_bytes=123_456_789, cpu_percent=42.5,
                                                                   members=members))

    def follower_message() -> None:
        follower = supervisor.conversation.follower
        assert follower is not None  # a ready agent's conversation is followed
        follower.last_message_at = (later + timedelta(minutes=1)).timestamp()

    def question() -> None:
        supervisor.question = "Proceed?"  # written without telling anyone: the next list sees it all the same

    def last_state() -> None:
        supervisor.last_state = {"reason": "Exited", "exit_code": 3, "message": "x", "finished_at": "t"}

    def restarts() -> None:
        supervisor.restarts += 1

    def status() -> None:
        supervisor._set(AgentStatus.READY, "FirstMessagePending", "not delivered yet")

    changes: list[tuple[str, Any, Any]] = [
        ("a sample of its processes", sample, lambda a: a["details"]["rss_bytes"] == 123_456_789
         and a["details"]["cpu_percent"] == 42.5),
        ("the size of its work directory", lambda: supervisor.disk_measured(987_654, False),
         lambda a: a["details"]["work_dir_bytes"] == 987_654 and a["details"]["work_dir_bytes_partial"] is True),
        ("a proxied request", lambda: setattr(supervisor, "active_at", later),
         lambda a: a["last_active_at"] == later.isoformat()),
        ("a message in its conversation", follower_message,
         lambda a: a["last_active_at"] == (later + timedelta(minutes=1)).isoformat()),
        ("a question to its user", question, lambda a: a["status"] == "waiting_input" and a["question"] == "Proceed?"),
        ("the end of a run", last_state, lambda a: a["details"]["last_exit_code"] == 3),
        ("a restart", restarts, lambda a: a["restarts"] == 1),
        ("a new reason", status, lambda a: a["reason"] == "FirstMessagePending"),
    ]
    other = (await listed(backend, texts))["b1"]
    for what, change, shows in changes:
        change()
        agents = await listed(backend, texts)
        assert shows(agents["a1"]), f"{what} is not in the next list: {agents['a1']}"
        assert agents["a1"] == fresh(supervisor), what
        assert agents["b1"] == other, f"{what} of a1 changed b1"
        # Nothing else changed: the next read is the very same state again.
        assert backend._state("a1") is backend._state("a1")
    assert texts.text(backend._state("a1")) == json.dumps(agent_json(supervisor.build_state())).encode()


async def test_suspend_and_resume_are_in_the_next_list(backend, settings):
    await backend.create(spec(settings, "a1"))
    await wait_ready(backend, "a1")
    texts = AgentTexts()
    assert (await listed(backend, texts))["a1"]["status"] == "ready"
    await backend.suspend("s1", "a1")
    agent = (await listed(backend, texts))["a1"]
    assert agent["status"] == "suspended" and agent["details"]["pid"] is None
    await backend.resume("s1", "a1")
    agent = (await listed(backend, texts))["a1"]
    assert agent["status"] in ("starting", "ready") and agent["details"]["pid"] is not None
    state = await wait_ready(backend, "a1")
    assert (await listed(backend, texts))["a1"] == json.loads(json.dumps(agent_json(state)))


def test_the_state_key_names_every_field_the_state_is_made_of():
    """The key is read from the supervisor's fields: a field of the state made from a field
    the key leaves out would go unseen. Checked by name against what the state reads."""
    from agentproxy.backends.local import report

    key_fields = set(re.findall(r"supervisor\.(\w+)", inspect.getsource(report.state_key)))
    read: set[str] = set()
    for function in (report.agent_details, report.last_active, report.agent_activity, Supervisor.build_state):
        read |= set(re.findall(r"(?:supervisor|self)\.(\w+)", inspect.getsource(function)))
    # Read through others: the conversation's follower, the process's pid (in its identity)
    # and adoption, the upstream (port and status), the id (the spec's).
    read -= {"conversation", "upstream", "id"}
    assert read <= key_fields, f"state_key leaves out {sorted(read - key_fields)}"
