"""``agentproxy serve``: the command, the bind rule and a graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from agentproxy import cli
from agentproxy.api.serve import api_keys_from, run_server
from agentproxy.cli.serve import cmd_serve
from agentproxy.settings import SettingsError

from .memory_backend import MemoryBackend
from .support import KEYS, Upstream, next_line, read_event

HANG_GUARD = 10.0
REPO = Path(__file__).resolve().parents[3]


def test_serve_is_a_subcommand_with_the_settings_options():
    args = cli.build_parser().parse_args(["serve", "--set", "server.port=9999", "--shutdown-timeout", "3"])
    assert args.handler is cmd_serve
    assert args.overrides == ["server.port=9999"] and args.shutdown_timeout == 3.0


def test_serve_refuses_a_non_loopback_host_without_keys(capsys):
    assert cli.main(["serve", "--set", "server.host=0.0.0.0"]) == 1
    err = capsys.readouterr().err
    assert "refusing to listen on '0.0.0.0' without API keys" in err and "Traceback" not in err


def test_api_keys_come_from_server_api_keys(settings):
    assert api_keys_from(settings) == []  # absent setting: no keys
    settings.server.api_keys = KEYS
    assert [k.name for k in api_keys_from(settings)] == ["admin", "alice", "bob"]
    settings.server.api_keys = [{"name": "x", "sha256": "nope"}]
    with pytest.raises(SettingsError, match=r"server.api_keys\[0\]"):
        api_keys_from(settings)


async def wait_until(predicate, what: str) -> None:
    for _ in range(int(HANG_GUARD / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


async def test_shutdown_drains_proxied_streams_then_closes_the_backend(settings, upstream: Upstream):
    backend = MemoryBackend(upstream=upstream.url)
    stop = asyncio.Event()
    addresses: list = []
    server = asyncio.create_task(run_server(
        settings, backend, host="127.0.0.1", port=0, stop=stop, on_listening=addresses.extend,
        handle_signals=False, shutdown_timeout=1.0))
    await wait_until(lambda: addresses or server.done(), "the server to listen")
    base = f"http://127.0.0.1:{addresses[0][1]}"
    assert backend.started
    gate: asyncio.Queue[int] = asyncio.Queue()
    upstream.agent.event_gate = gate
    async with aiohttp.ClientSession() as client:
        assert (await client.post(f"{base}/sessions/s1/agents", json={"id": "a1"})).status == 201
        events = await client.get(f"{base}/events")
        assert await next_line(events) == ": connected\n"
        stream = await client.get(f"{base}/sessions/s1/agents/a1/api/events?count=3")
        assert (await read_event(stream))["event"] == "status_change"

        stop.set()
        # The status stream ends at once; the proxied stream in flight keeps flowing while draining.
        assert await asyncio.wait_for(events.content.read(), HANG_GUARD) in (b"\n", b"")
        gate.put_nowait(0)
        assert (await read_event(stream))["event"] == "message_update"
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as late:
                for _ in range(int(HANG_GUARD / 0.01)):  # until the listener is closed
                    await late.get(f"{base}/healthz")
                    await asyncio.sleep(0.01)
        await asyncio.wait_for(server, HANG_GUARD)  # the drain ends after shutdown_timeout
        assert backend.closed
        await asyncio.wait_for(upstream.agent.stream_closed.wait(), HANG_GUARD)
        assert backend.agents  # closing the backend leaves agents alone


def test_sigterm_stops_the_server_and_closes_the_backend():
    process = subprocess.Popen([sys.executable, "-m", "tests.unit.api.serve_memory"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = process.stdout.readline()
        assert line.startswith("port "), line + process.stderr.read()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=HANG_GUARD)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, err
    assert "backend closed: True" in out


def test_a_taken_port_is_one_line_of_error(monkeypatch, capsys):
    import agentproxy.backends.factory as factory

    backend = MemoryBackend()
    monkeypatch.setattr(factory, "make_backend", lambda settings: backend)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["serve", "--set", f"server.port={port}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"agentproxy: error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1
    assert backend.started and backend.closed


async def test_serve_closes_a_connection_without_a_whole_head_at_the_keep_alive_deadline(settings, monkeypatch):
    from agentproxy.api.relay import fastpath

    monkeypatch.setattr(fastpath, "KEEPALIVE_TIMEOUT", 0.5)
    stop = asyncio.Event()
    addresses: list = []
    server = asyncio.create_task(run_server(
        settings, MemoryBackend(), host="127.0.0.1", port=0, stop=stop, on_listening=addresses.extend,
        handle_signals=False, shutdown_timeout=1.0))
    try:
        await wait_until(lambda: addresses or server.done(), "the server to listen")
        reader, writer = await asyncio.open_connection("127.0.0.1", addresses[0][1])
        try:
            # One request aiohttp answers (the connection is handed to it), then part of another.
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: proxy.test\r\n\r\nGET /heal")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG_GUARD)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
                         .split(b":")[1])
            await reader.readexactly(length)
            assert await asyncio.wait_for(reader.read(), HANG_GUARD) == b""  # closed by the server
        finally:
            writer.close()
    finally:
        stop.set()
        await asyncio.wait_for(server, HANG_GUARD)
