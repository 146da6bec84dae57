#!/usr/bin/env python3
"""tcpconnlat: trace TCP connects and show how long each took to establish.

The lcc version of libbpf-tools' tcpconnlat: same options, same columns
(``PID COMM IP SADDR [LPORT] DADDR DPORT LAT(ms)``), IPv4 and IPv6.  The
BPF side (tcpconnlat.bpf.c) has three alternative ways to see a connect and
its completion; the first one this kernel runs is used (``-v`` says which).

    tcpconnlat              # trace every connect
    tcpconnlat 1            # only connections slower than 1 ms
    tcpconnlat 0.1          # only connections slower than 100 us
    tcpconnlat -t           # with a timestamp column
    tcpconnlat -p 185       # only PID 185
    tcpconnlat -L           # with the local port column
    tcpconnlat -d 10 --json # 10 seconds, one JSON object per connection

Requires root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from _common.events import POLL_SECONDS, RingEvents, polling  # noqa: E402

from lcc import ClbcBase, Fallback, loop  # noqa: E402
from lcc.netfmt import AF_INET, fmt_addr  # noqa: E402

# The alternatives, best first: each is the set of programs that do the job together.
FENTRY = ("fentry_tcp_v4_connect", "fentry_tcp_v6_connect", "fentry_tcp_rcv_state_process")
KPROBE = ("kprobe_tcp_v4_connect", "kprobe_tcp_v6_connect", "kprobe_tcp_rcv_state_process")
TRACEPOINT = ("tp_inet_sock_set_state",)


def mono_to_wall(mono_s: float) -> float:
    """A CLOCK_MONOTONIC time (bpf_ktime_get_ns) as wall-clock seconds since the epoch,
    by the offset between the two clocks now (a clock step since then shifts it)."""
    return time.time() - time.monotonic() + mono_s


class Connection(NamedTuple):
    """One established connection as the tool reports it (a NamedTuple: importing
    ``dataclasses``, and with it ``inspect``, costs about 10 ms of every start)."""

    pid: int
    comm: str
    ip: int          # 4 or 6
    saddr: str
    lport: int
    daddr: str
    dport: int
    lat_ms: float
    ts: float        # when it was established: wall clock, seconds since the epoch
    ts_mono: float   # the same moment in seconds of CLOCK_MONOTONIC (the kernel's clock)

    @classmethod
    def from_event(cls, ev: Any) -> "Connection":
        """Build from a decoded ``struct event`` (see tcpconnlat.h)."""
        size = 4 if ev.af == AF_INET else 16
        return cls(pid=ev.tgid, comm=ev.comm, ip=4 if ev.af == AF_INET else 6,
                   saddr=fmt_addr(ev.af, ev.saddr[:size]), lport=ev.lport,
                   daddr=fmt_addr(ev.af, ev.daddr[:size]), dport=ev.dport,
                   lat_ms=ev.delta_us / 1000.0, ts=round(mono_to_wall(ev.ts_us / 1e6), 6),
                   ts_mono=ev.ts_us / 1e6)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "connect", **self._asdict()}


class TcpConnLat(RingEvents, ClbcBase):
    """TCP connect latency tracer.

    ``min_ms``: report only connections that took at least this long;
    ``pid``: only connects made by this process (0: all).  Both are applied
    in the kernel.  Other keyword arguments go to :class:`lcc.ClbcBase`.
    Requires root (or CAP_BPF + CAP_PERFMON).
    """

    def __init__(self, min_ms: float = 0.0, pid: int = 0, **kwargs: Any) -> None:
        if min_ms < 0:
            raise ValueError("min_ms must not be negative")
        # A fresh Fallback per instance: it records what was chosen for this one.
        self.alternatives = Fallback(FENTRY, KPROBE, TRACEPOINT)
        super().__init__("tcpconnlat", rodata={"targ_min_us": int(round(min_ms * 1000)),
                                               "targ_tgid": int(pid)},
                         fallback=self.alternatives, **kwargs)

    def open_events(self, callback: Callable[[Connection], Any]) -> None:
        """Deliver each established connection to ``callback`` as a :class:`Connection`."""
        self.maps["events"].open_ring_buffer(lambda ev: callback(Connection.from_event(ev)))


class Printer:
    """libbpf-tools' output format, or JSON lines."""

    def __init__(self, *, json: bool, lport: bool, timestamp: bool) -> None:
        self.json, self.lport, self.timestamp = json, lport, timestamp
        self.first_ts: float | None = None
        self.latencies: list[float] = []

    def header(self) -> None:
        if self.json:
            return
        line = f"{'TIME(s)':<9} " if self.timestamp else ""
        if self.lport:
            line += (f"{'PID':<6} {'COMM':<12} {'IP':<2} {'SADDR':<16} {'LPORT':<6} "
                     f"{'DADDR':<16} {'DPORT':<5} LAT(ms)")
        else:
            line += f"{'PID':<6} {'COMM':<12} {'IP':<2} {'SADDR':<16} {'DADDR':<16} " \
                    f"{'DPORT':<5} LAT(ms)"
        print(line, flush=True)

    def __call__(self, c: Connection) -> None:
        self.latencies.append(c.lat_ms)
        if self.first_ts is None:
            self.first_ts = c.ts_mono
        if self.json:
            cli.print_json(c.to_dict(), flush=False)
            return
        line = f"{c.ts_mono - self.first_ts:<9.3f} " if self.timestamp else ""
        line += f"{c.pid:<6} {c.comm[:12]:<12} {c.ip:<2} {c.saddr:<16} "
        if self.lport:
            line += f"{c.lport:<6} "
        line += f"{c.daddr:<16} {c.dport:<5} {c.lat_ms:.2f}"
        print(line)  # flushed once per poll (main)

    def summary(self, dropped: int, seconds: float) -> None:
        lat = self.latencies
        data = {"type": "summary", "connections": len(lat), "seconds": round(seconds, 3),
                "dropped": dropped,
                "lat_ms_min": min(lat) if lat else None,
                "lat_ms_avg": round(sum(lat) / len(lat), 3) if lat else None,
                "lat_ms_max": max(lat) if lat else None}
        if self.json:
            cli.print_json(data)
            return
        text = f"\n{len(lat)} connection{'s' if len(lat) != 1 else ''} in {seconds:.1f}s"
        if lat:
            text += (f", latency min/avg/max {data['lat_ms_min']:.2f}/"
                     f"{data['lat_ms_avg']:.2f}/{data['lat_ms_max']:.2f} ms")
        if dropped:
            text += f", {dropped} events dropped (ring buffer full)"
        print(text, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="tcpconnlat", description="Trace TCP connects and show connection latency.",
        epilog="examples:\n" + doc[2] + "\n", formatter_class=cli.formatter(argparse.RawDescriptionHelpFormatter))
    parser.add_argument("min_ms", nargs="?", type=float, default=0.0,
                        help="minimum latency to report, in ms (default: all)")
    parser.add_argument("-t", "--timestamp", action="store_true",
                        help="include a timestamp column (seconds since the first event)")
    parser.add_argument("-p", "--pid", type=int, default=0, help="trace this PID only")
    parser.add_argument("-L", "--lport", action="store_true", help="include the LPORT column")
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.min_ms < 0:
        parser.error("min_ms must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with TcpConnLat(min_ms=args.min_ms, pid=args.pid) as tool:
        cli.report_fallbacks(tool, args.verbose)
        printer = Printer(json=args.json, lport=args.lport, timestamp=args.timestamp)
        tool.open_events(printer)
        # The ready line comes once Ctrl-C and SIGTERM are caught: a stop may follow it at once.
        with loop.stopping(args.duration) as stop:
            cli.info("Tracing TCP connects. Hit Ctrl-C to end.")
            printer.header()
            stop.run(polling(tool, sys.stdout.flush), tick=POLL_SECONDS)
            tool.ring_buffer_consume()  # what arrived before the stop
            sys.stdout.flush()
        printer.summary(tool.dropped, stop.elapsed())
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
