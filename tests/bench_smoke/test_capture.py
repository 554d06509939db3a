"""The proxy benchmark's packet capture: real TCP on the loopback, stamped by the kernel.

Capturing needs CAP_NET_RAW (the suite runs as root); without it the capture refuses with
PermissionError, which the benchmark reports as no hop figures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.capture import LoopbackCapture, flow_events, tcp_packet

ROOT = Path(__file__).resolve().parents[2]


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    for sock in (client, accepted):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server, client, accepted


def test_capture_stamps_each_event_with_the_packet_that_completed_it():
    if os.geteuid() != 0:
        pytest.fail("capturing packets needs root (CAP_NET_RAW), as `bin/just unit` is run in CI")
    server, client, accepted = _pair()
    source, destination = client.getsockname()[1], accepted.getsockname()[1]
    try:
        capture = LoopbackCapture.start()
        client.sendall(b"1b\r\nevent: one\ndata: {\"n\": 1}\n\n\r\n")  # one chunk, one event
        time.sleep(0.01)
        client.sendall(b"b\r\nevent: two\n\r\n")  # an event in two chunks, two packets
        time.sleep(0.01)
        client.sendall(b"7\r\ndata: 2\r\n")
        time.sleep(0.01)
        client.sendall(b"2\r\n\n\n\r\n")
        accepted.sendall(b"not from the client")
        time.sleep(0.05)
        packets = capture.stop()
    finally:
        for sock in (client, accepted, server):
            sock.close()
    sent = [p for p in packets if p.source == source and p.destination == destination]
    assert [p.payload[:3] for p in sent] == [b"1b\r", b"b\r\n", b"7\r\n", b"2\r\n"]
    assert [p.stamp for p in sent] == sorted(p.stamp for p in sent)
    events = flow_events(packets, source, destination=destination)
    assert [text for _, text in events] == ['event: one\ndata: {"n": 1}', "event: two\ndata: 2"]
    assert [stamp for stamp, _ in events] == [sent[0].stamp, sent[3].stamp]
    # The same flow, found as "anything from this port but ...", and nothing of other ports.
    assert flow_events(packets, source, not_to=frozenset({destination + 1})) == events
    assert flow_events(packets, source, not_to=frozenset({destination})) == []


def test_capture_without_the_right_to_is_refused():
    """A process that gave up root (now ``nobody``): starting a capture raises PermissionError."""
    probe = ("import os; from benchmarks.capture import LoopbackCapture\n"
             "if os.geteuid() == 0:\n    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
             "try:\n    LoopbackCapture.start()\nexcept PermissionError:\n    print('refused')\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "refused", proc.stderr


def test_a_datagram_that_is_not_tcp_with_a_payload_is_no_packet():
    udp = bytes([0x45, 0, 0, 28]) + bytes(5) + bytes([socket.IPPROTO_UDP]) + bytes(18)
    assert tcp_packet(udp, 1) is None
    bare_ack = bytes([0x45, 0, 0, 40]) + bytes(5) + bytes([socket.IPPROTO_TCP]) + bytes(10) + bytes(12) + bytes([0x50]) + bytes(7)
    assert tcp_packet(bare_ack, 1) is None
    assert tcp_packet(bare_ack, None) is None
