#!/usr/bin/env python3
"""pingtrace's prober: sends ICMP echo requests from a raw socket and times the replies.

:func:`main` is the prober; :class:`Prober` is pingtrace's handle on it.  It
runs as its own process (``python3 prober.py TARGET ID COUNT INTERVAL
TIMEOUT SIZE``) so that its send and receive syscalls are not delayed by the
tracer's Python work (the GIL) and so that pingtrace can tell the kernel
which process's ``sendto()`` calls to time.  It waits for a line on stdin
before the first probe, then writes one line per probe on stdout::

    <seq> <sent_ns> <received_ns>      (CLOCK_MONOTONIC, received_ns -1 on timeout)

and ``done`` at the end.  SIGTERM ends it; so does the end of its parent.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

PR_SET_PDEATHSIG = 1


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int) -> bytes:
    """An ICMP echo request with ``size`` payload bytes."""
    payload = bytes(i & 0xFF for i in range(size))
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload


def is_our_reply(packet: bytes, ident: int, seq: int) -> bool:
    """Whether a raw-socket packet (IP header included) is the reply to (ident, seq)."""
    if len(packet) < 20:
        return False
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8:
        return False
    icmp_type, code, _csum, rid, rseq = struct.unpack("!BBHHH", packet[ihl:ihl + 8])
    return icmp_type == 0 and code == 0 and rid == ident and rseq == seq


def probe(sock: socket.socket, target: str, ident: int, seq: int, size: int,
          timeout: float) -> tuple[int, int]:
    """Send one request and wait for its reply: (sent_ns, received_ns or -1)."""
    packet = echo_request(ident, seq, size)
    t0 = time.monotonic_ns()
    sock.sendto(packet, (target, 0))
    deadline = t0 + int(timeout * 1e9)
    while True:
        left = deadline - time.monotonic_ns()
        if left <= 0:
            return t0, -1
        sock.settimeout(left / 1e9)
        try:
            data = sock.recvfrom(65535)[0]
        except (TimeoutError, InterruptedError):
            continue
        t1 = time.monotonic_ns()
        if is_our_reply(data, ident, seq):
            return t0, t1


# -- the tracer's side ------------------------------------------------------------------

class Probe:
    """One echo the prober sent: its user-space times and, later, its kernel record."""

    def __init__(self, seq: int, sent_ns: int, received_ns: int) -> None:
        self.seq = seq
        self.sent_ns = sent_ns
        self.received_ns = received_ns if received_ns >= 0 else None
        self.arrived = time.monotonic_ns()

    @property
    def lost(self) -> bool:
        return self.received_ns is None

    @property
    def user_rtt_ns(self) -> int | None:
        return None if self.received_ns is None else self.received_ns - self.sent_ns


class Prober:
    """prober.py as a child process (see its docstring for the protocol)."""

    def __init__(self, target: str, ident: int, count: int, interval: float, timeout: float,
                 size: int) -> None:
        argv = [sys.executable, os.path.abspath(__file__), target, str(ident), str(count),
                str(interval), str(timeout), str(size)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        line = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if line != "ready":
            self.proc.wait()
            from lcc import LccError
            raise LccError("the prober could not open a raw ICMP socket (needs root or "
                            "CAP_NET_RAW)")
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
        self._buf = ""
        self.finished = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fileno(self) -> int:
        return self.proc.stdout.fileno()  # type: ignore[union-attr]

    def go(self) -> None:
        self.proc.stdin.write("go\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]

    def read(self) -> list[Probe]:
        out = []
        try:
            chunk = os.read(self.fileno(), 65536).decode()
        except BlockingIOError:
            return out
        if not chunk:
            self.finished = True
        self._buf += chunk
        *lines, self._buf = self._buf.split("\n")
        for line in lines:
            parts = line.split()
            if parts == ["done"]:
                self.finished = True
            elif len(parts) == 3:
                out.append(Probe(int(parts[0]), int(parts[1]), int(parts[2])))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
            except OSError:
                pass
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait()


# -- the child process -------------------------------------------------------------------

def main(argv: list[str]) -> int:
    target, ident, count, interval, timeout, size = (argv[0], int(argv[1]), int(argv[2]),
                                                     float(argv[3]), float(argv[4]), int(argv[5]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the tracer decides when to stop
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("ready", flush=True)
    if not sys.stdin.readline():        # the tracer is attached and knows our pid
        return 0
    seq = 0
    next_at = time.monotonic()
    while count <= 0 or seq < count:
        seq += 1
        t0, t1 = probe(sock, target, ident, seq & 0xFFFF, size, timeout)
        print(f"{seq & 0xFFFF} {t0} {t1}", flush=True)
        next_at += interval
        # Sleep until the next probe, but leave at once if the tracer closes stdin.
        delay = next_at - time.monotonic()
        if delay > 0 and select.select([sys.stdin], [], [], delay)[0] and not sys.stdin.readline():
            break
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
