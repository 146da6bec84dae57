"""pingtrace's side channel: the peer host's stage times for the prober's echoes.

A small UDP protocol, one JSON object per datagram:

    prober -> server  {"op": "hello", "id": ICMP_ID}           (repeated until acked)
    server -> prober  {"op": "ack", "id": ICMP_ID}
    server -> prober  {"op": "report", "id": ICMP_ID, "seq": SEQ,
                       "points": [[icmp_type, point, ts_ns], ...]}

The server (``pingtrace --server``) subscribes the sender's address and ICMP
id and, for every echo request from that address with that id that it
answers, sends the points it saw (timestamps of its own clock: the prober
only uses differences between them).  Reports are sent once; a lost one
leaves that probe without peer stages.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

DEFAULT_PORT = 7656
MAX_DATAGRAM = 65000
SUBSCRIPTION_S = 3600.0   # a hello keeps a prober subscribed this long


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


class PeerServer:
    """The server's end: answers hellos and sends reports to subscribed probers."""

    def __init__(self, port: int = DEFAULT_PORT, bind: str = "0.0.0.0") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        # (prober address, ICMP id) -> (UDP address to report to, expiry)
        self.subscribers: dict[tuple[str, int], tuple[tuple[str, int], float]] = {}
        self.sent = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def handle(self) -> list[tuple[str, int]]:
        """Read waiting datagrams; returns the (address, id) pairs that said hello."""
        new = []
        while True:
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except BlockingIOError:
                return new
            msg = _decode(data)
            if not msg or msg.get("op") != "hello" or not isinstance(msg.get("id"), int):
                continue
            key = (addr[0], msg["id"] & 0xFFFF)
            if key not in self.subscribers:
                new.append(key)
            self.subscribers[key] = (addr, time.monotonic() + SUBSCRIPTION_S)
            self._send(addr, {"op": "ack", "id": key[1]})

    def wants(self, remote: str, ident: int) -> bool:
        sub = self.subscribers.get((remote, ident))
        return sub is not None and sub[1] > time.monotonic()

    def report(self, remote: str, ident: int, seq: int, points: list[list[int]]) -> bool:
        """Send the points of one echo to its prober, if it subscribed."""
        if not self.wants(remote, ident):
            return False
        addr = self.subscribers[(remote, ident)][0]
        self._send(addr, {"op": "report", "id": ident, "seq": seq, "points": points})
        self.sent += 1
        return True

    def _send(self, addr: tuple[str, int], obj: dict[str, Any]) -> None:
        try:
            self.sock.sendto(_encode(obj), addr)
        except OSError:
            pass  # the prober went away; UDP has nothing else to say

    def close(self) -> None:
        self.sock.close()


class PeerClient:
    """The prober's end: subscribes to a server and collects its reports."""

    def __init__(self, server: str, port: int, ident: int) -> None:
        self.ident = ident & 0xFFFF
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((server, port))
        self.sock.setblocking(False)
        self.reports: dict[int, list[list[int]]] = {}

    def fileno(self) -> int:
        return self.sock.fileno()

    def hello(self, timeout: float = 3.0, every: float = 0.25) -> bool:
        """Subscribe; True once the server acknowledged (retries until ``timeout``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.sock.send(_encode({"op": "hello", "id": self.ident}))
            except OSError:
                pass  # e.g. ECONNREFUSED from an earlier ICMP port unreachable
            end = min(deadline, time.monotonic() + every)
            while time.monotonic() < end:
                self.sock.settimeout(max(0.001, end - time.monotonic()))
                try:
                    msg = _decode(self.sock.recv(MAX_DATAGRAM))
                except (TimeoutError, OSError):
                    break
                if msg and msg.get("op") == "ack" and msg.get("id") == self.ident:
                    self.sock.setblocking(False)
                    return True
        self.sock.setblocking(False)
        return False

    def receive(self) -> list[int]:
        """Read waiting reports; returns the sequence numbers that arrived."""
        got = []
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, ConnectionRefusedError):
                return got
            msg = _decode(data)
            if (msg and msg.get("op") == "report" and msg.get("id") == self.ident
                    and isinstance(msg.get("seq"), int) and isinstance(msg.get("points"), list)):
                self.reports[msg["seq"]] = msg["points"]
                got.append(msg["seq"])

    def close(self) -> None:
        self.sock.close()
