"""The client's pure parts: the event-stream parser, tables, the transcript of a chat and
how it is printed, following logs, error answers and hiding the key."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from agentproxy.cli.client import hide_key_from_process_title
from agentproxy.client.agents import new_lines
from agentproxy.client.errors import EXIT_NOT_FOUND, UsageProblem
from agentproxy.client.http import check_server_url, server_error
from agentproxy.client.output import age, agents_table, describe_status, terminal_safe
from agentproxy.client.transcript import Printer, Transcript, clean
from agentproxy.sse import Event, SSEParser

STREAM = ('event: status\ndata: {"a": 1}\n\n: heartbeat\n\nevent: message_update\r\ndata: line one\r\n'
          'data: line two ✓\r\n\r\ndata: unnamed\r\rid: 7\ndata: x\n\n').encode()
EXPECTED = [Event("status", '{"a": 1}'), Event("message_update", "line one\nline two ✓"),
            Event("message", "unnamed"), Event("message", "x", "7")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_sse_parser_takes_chunks_of_any_size(size):
    parser = SSEParser()
    events = []
    for start in range(0, len(STREAM), size):
        events += parser.feed(STREAM[start:start + size])
    assert events == EXPECTED


def test_age_reads_like_kubectl():
    now = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
    def ago(**delta):
        return age((now - timedelta(**delta)).isoformat(), now)
    assert [ago(seconds=5), ago(seconds=119), ago(minutes=5, seconds=10), ago(minutes=90), ago(hours=5, minutes=3),
            ago(hours=30), ago(days=3, hours=2), ago(days=40)] == ["5s", "119s", "5m10s", "90m", "5h3m", "30h",
                                                                   "3d2h", "40d"]
    assert age(None) == age("yesterday") == "<unknown>"


def test_table_cells_cannot_break_lines_or_drive_the_terminal():
    agent = {"session": "s", "id": "a1", "agent": "echo", "status": "failed", "restarts": 2,
             "reason": "Bad\nFAKE ROW\x1b[2J\x07", "created_at": datetime.now(UTC).isoformat()}
    text = agents_table([agent])
    assert text.count("\n") == 2 and "\x1b" not in text and "\x07" not in text
    assert text.splitlines()[1].split()[:5] == ["s", "a1", "echo", "failed", "Bad"]
    assert terminal_safe("a\tb\nc\x1b]0;title\x07\x9b") == "a\tb\nc]0;title"
    long = describe_status({"status": "failed", "reason": "R", "message": "m" * 1000})
    assert long.startswith("failed (R: mmm") and len(long) < 260 and long.endswith("…)")


def test_transcript_tells_new_appended_replaced_and_same():
    transcript = Transcript()
    assert transcript.apply({"id": 0, "role": "agent", "message": "banner   \n\n"}).kind == "new"
    assert transcript.messages[0].text == "banner"
    change = transcript.apply({"id": 2, "role": "agent", "message": "echo: he"})
    assert change.kind == "new"
    change = transcript.apply({"id": 2, "role": "agent", "message": "echo: hello   "})
    assert (change.kind, change.added) == ("append", "llo")
    assert transcript.apply({"id": 2, "role": "agent", "message": "echo: hello"}).kind == "same"
    assert transcript.apply({"id": 2, "role": "agent", "message": "something else"}).kind == "replace"
    transcript.apply_event(json.dumps({"id": 1, "role": "user", "message": "hello"}))
    assert [m.id for m in transcript.after(0)] == [1, 2] and [m.id for m in transcript.after(0, "agent")] == [2]
    assert transcript.last_id == 2
    assert clean("\r\n  \r\nx  \r\ny\x1b[31m\n\n") == "x\ny[31m"


def test_printer_streams_appends_and_redraws_a_changed_last_message():
    out = io.StringIO()
    printer = Printer(out, redraw=True)
    transcript = Transcript()
    printer.show(transcript.apply({"id": 2, "role": "agent", "message": "echo: he"}))
    printer.show(transcript.apply({"id": 2, "role": "agent", "message": "echo: hello"}))
    assert out.getvalue() == "echo: hello"
    printer.show(transcript.apply({"id": 2, "role": "agent", "message": "rewritten"}))
    assert out.getvalue() == "echo: hello\r\x1b[Jrewritten"
    printer.line("[agent stable]")
    assert out.getvalue().endswith("rewritten\n[agent stable]\n")

    plain = io.StringIO()
    printer = Printer(plain, redraw=False)
    transcript = Transcript()
    printer.show(transcript.apply({"id": 3, "role": "agent", "message": "one"}))
    printer.show(transcript.apply({"id": 3, "role": "agent", "message": "two"}))
    printer.show(transcript.apply({"id": 4, "role": "user", "message": "typed"}))
    assert plain.getvalue() == "one\ntwo\n> typed"


def test_new_lines_of_a_growing_tail():
    assert new_lines(["a", "b", "c"], ["b", "c", "d", "e"]) == ["d", "e"]
    assert new_lines(["a", "b"], ["a", "b"]) == []
    assert new_lines(["a", "b"], ["x", "y"]) == ["x", "y"]  # rotated, or more than the window
    assert new_lines([], ["a"]) == ["a"]


def test_error_answers_become_one_line_with_code_and_message():
    ours = server_error(404, b'{"error": {"code": "not_found", "message": "agent \'a\' not found"}}')
    assert (str(ours), ours.exit_code) == ("not_found (404): agent 'a' not found", EXIT_NOT_FOUND)
    agentapi = server_error(500, b'{"title": "Internal Server Error", "status": 500, "detail": "agent is busy"}')
    assert str(agentapi) == "agent_error (500): agent is busy"
    text = server_error(502, b"<html>\n<body>Bad   Gateway</body></html>")
    assert str(text) == "error (502): <html> <body>Bad Gateway</body></html>" and text.exit_code == 1


def test_server_urls_are_checked():
    assert check_server_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert check_server_url("https://proxy.example/base") == "https://proxy.example/base"
    for bad in ("127.0.0.1:8080", "ftp://host", "http://", "http://user:secret@host", "http://h/?q=1"):
        with pytest.raises(UsageProblem) as info:
            check_server_url(bad)
        assert "secret" not in str(info.value)


def test_the_key_is_hidden_from_the_process_title():
    argv = ["/usr/bin/python3", "-m", "agentproxy", "chat", "s", "a", "--api-key", "k3y-value", "--api-key=k3y-value"]
    assert hide_key_from_process_title(argv, "k3y-value") == [*argv[:7], "***", "--api-key=***"]
