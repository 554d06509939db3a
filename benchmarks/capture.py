"""Kernel timestamps of the TCP packets on the loopback interface: how long a proxy holds an event.

An event reader stamps an event when its own read returns, so the reader's wake-up, and the
order in which agentapi serves its streams, are part of what it measures. The kernel stamps
every packet when the sender's write hands it to the loopback device. The time from agentapi's
packet to a proxy to that proxy's packet to its client is the proxy's *hop* alone: its wake-up,
its work and its write, nothing of the readers'.

A packet socket (``AF_PACKET``) needs ``CAP_NET_RAW`` (root). Nothing is read from it while the
capture runs, so the capture wakes no process and takes no CPU from what it measures: the
packets wait in a socket buffer made large enough (``SO_RCVBUFFORCE``) and are read at the end.
"""

from __future__ import annotations

import re
import socket
import struct
from dataclasses import dataclass

from streams import parse_events

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
"""A packet socket on ``lo`` sees every packet twice (sent, then received); the sent copy counts."""
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
BUFFER_BYTES = 64 << 20
"""Room for every packet of an SSE measurement (a few hundred), and the /status polls beside them."""
ETHERNET_HEADER = 14
CHUNK_START = re.compile(rb"[0-9a-fA-F]+(;[^\r\n]*)?\r\n")


@dataclass(frozen=True)
class Packet:
    """One TCP packet with a payload: when the kernel saw it leave, and its ports."""

    stamp: int
    """Nanoseconds (``CLOCK_REALTIME``), comparable only with other packets' stamps."""
    source: int
    destination: int
    payload: bytes


class LoopbackCapture:
    """Every TCP packet with a payload sent on ``lo`` between :meth:`start` and :meth:`stop`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @classmethod
    def start(cls) -> LoopbackCapture:
        """Start capturing; raises :class:`PermissionError` without ``CAP_NET_RAW``."""
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BUFFER_BYTES)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind(("lo", 0))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def stop(self) -> list[Packet]:
        """Stop, and return the packets in the order they were sent."""
        packets = []
        self._sock.setblocking(False)
        try:
            while True:
                try:
                    frame, ancillary, _, address = self._sock.recvmsg(1 << 17, 64)
                except BlockingIOError:
                    break
                if address[2] != PACKET_OUTGOING:
                    continue
                stamp = next((_nanoseconds(data) for level, kind, data in ancillary
                              if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS), None)
                packet = tcp_packet(frame[ETHERNET_HEADER:], stamp)
                if packet is not None:
                    packets.append(packet)
        finally:
            self._sock.close()
        return packets


def _nanoseconds(timespec: bytes) -> int:
    seconds, nanoseconds = struct.unpack("qq", timespec[:16])
    return seconds * 1_000_000_000 + nanoseconds


def tcp_packet(ip: bytes, stamp: int | None) -> Packet | None:
    """The TCP packet in an IPv4 datagram, if it is one and carries a payload."""
    if stamp is None or len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    header = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[header:total]
    if len(tcp) < 20:
        return None
    source, destination = struct.unpack("!HH", tcp[:4])
    payload = tcp[(tcp[12] >> 4) * 4:]
    return Packet(stamp, source, destination, payload) if payload else None


def flow_events(packets: list[Packet], source: int, destination: int | None = None,
                not_to: frozenset[int] = frozenset()) -> list[tuple[int, str]]:
    """The Server-Sent Events sent from port ``source`` (to ``destination``, or to any port but
    those in ``not_to``), each stamped with the packet that completed it.

    The capture starts while the streams are quiet, so each flow starts at an event's start
    (and, when chunked, at a chunk's start)."""
    flows: dict[int, list[tuple[int, bytes]]] = {}
    for packet in packets:
        if packet.source != source or packet.destination in not_to:
            continue
        if destination is None or packet.destination == destination:
            flows.setdefault(packet.destination, []).append((packet.stamp, packet.payload))
    events = []
    for reads in flows.values():
        events += parse_events(reads, chunked=CHUNK_START.match(reads[0][1]) is not None)
    return sorted(events)
