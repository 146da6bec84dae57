#!/usr/bin/env python3
"""tcpstates: trace TCP state changes, retransmits and resets.

Each state change prints as BCC's tcpstates does (SKADDR C-PID C-COMM LADDR
LPORT RADDR RPORT OLDSTATE -> NEWSTATE MS), MS being the time spent in the
old state.  Retransmits and resets print on the same columns with ``::``
and the event name instead of ``->`` and a new state.  All filters run in
the kernel; once a socket matches, it is followed until it closes.

    tcpstates                  # every TCP socket
    tcpstates -P 443           # connections with port 443 on either side
    tcpstates -D 80,443        # remote port 80 or 443
    tcpstates -L 8080 -D 5432  # local port 8080 and remote port 5432
    tcpstates -a 10.0.0.5 -4   # IPv4 connections to or from 10.0.0.5
    tcpstates -p 1234          # sockets process 1234 connects, listens on or accepts
    tcpstates -T -w            # with a time column, wide addresses
    tcpstates -d 10 --json     # 10 seconds, one JSON object per event

C-PID and C-COMM are the task on CPU when the event happened; for changes
made in softirq (most of them after the handshake) that is not the owner.
Requires root (or CAP_BPF + CAP_PERFMON) and a kernel with BTF.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from _common.events import RingEvents  # noqa: E402

from lcc import ClbcBase, loop  # noqa: E402
from lcc.btf import enum_names  # noqa: E402
from lcc.errors import LccError  # noqa: E402
from lcc.netfmt import AF_INET, AF_INET6, addr_to_raw, fmt_addr, tcp_state_name  # noqa: E402

MAX_PORTS = 8  # tcpstates.h

# enum event_kind in tcpstates.h -> the name printed and used in JSON
KINDS = {1: "state", 2: "retransmit", 3: "reset_sent", 4: "reset_recv"}
KIND_LABELS = {"retransmit": "RETRANSMIT", "reset_sent": "RESET_SENT", "reset_recv": "RESET_RECV"}


def _reset_reasons() -> dict[int, str]:
    """``enum sk_rst_reason`` from the kernel's BTF, without the SK_RST_REASON_ prefix."""
    try:
        names = enum_names("sk_rst_reason")
    except (LccError, KeyError):
        return {}
    return {v: n.removeprefix("SK_RST_REASON_") for v, n in names.items()}


@dataclass(frozen=True)
class TcpEvent:
    """A state change, retransmit or reset, as the tool reports it."""

    kind: str            # state | retransmit | reset_sent | reset_recv
    skaddr: int
    pid: int             # task on CPU at the time
    comm: str
    ip: int              # 4 or 6
    laddr: str
    lport: int
    raddr: str
    rport: int
    oldstate: str        # for other kinds: the socket's state
    newstate: str
    ms: float            # time in oldstate (for other kinds: in the current state so far)
    ts: float            # seconds of CLOCK_MONOTONIC
    detail: str = ""     # reset reason; retransmit error

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skaddr"] = f"{self.skaddr:x}"
        return {"type": d.pop("kind"), **d}


def _detail(kind: str, value: int, reasons: dict[int, str]) -> str:
    if kind == "reset_sent":
        return reasons.get(value, "") if value >= 0 else ""
    if kind == "retransmit" and value:
        return f"error {value}"
    return ""


class TcpStates(RingEvents, ClbcBase):
    """TCP state, retransmit and reset tracer.

    Filters (all applied in the kernel, empty means any): ``pid``;
    ``family`` (4 or 6); ``addr`` (local or remote address, text); ``lports``,
    ``rports``, ``ports`` (local, remote, either side; up to 8 each).
    ``retransmits``/``resets`` say whether those programs load at all.  Other keyword
    arguments go to :class:`lcc.ClbcBase`.  Requires root (or CAP_BPF +
    CAP_PERFMON).
    """

    def __init__(self, *, pid: int = 0, family: int | None = None, addr: str | None = None,
                 lports: Sequence[int] = (), rports: Sequence[int] = (),
                 ports: Sequence[int] = (), retransmits: bool = True, resets: bool = True,
                 **kwargs: Any) -> None:
        rodata: dict[str, Any] = {"targ_tgid": int(pid)}
        if family is not None:
            rodata["targ_family"] = {4: AF_INET, 6: AF_INET6}[family]
        if addr:
            fam, raw = addr_to_raw(addr)
            rodata["targ_addr_family"] = fam
            rodata["targ_addr"] = list(raw.ljust(16, b"\0"))
        for name, values in (("targ_lports", lports), ("targ_rports", rports),
                             ("targ_ports", ports)):
            values = list(values)
            if len(values) > MAX_PORTS:
                raise ValueError(f"at most {MAX_PORTS} ports per filter")
            if values:
                rodata[name] = values + [0] * (MAX_PORTS - len(values))
        programs = ["handle_set_state"]
        if retransmits:
            programs.append("handle_retransmit")
        if resets:
            programs += ["handle_send_reset", "handle_receive_reset"]
        super().__init__("tcpstates", rodata=rodata, programs=programs, **kwargs)
        self._reasons = _reset_reasons()

    def open_events(self, callback: Callable[[TcpEvent], Any]) -> None:
        """Deliver each event to ``callback`` as a :class:`TcpEvent`."""
        self.maps["events"].open_ring_buffer(lambda ev: callback(self.decode(ev)))

    def decode(self, ev: Any) -> TcpEvent:
        """A decoded ``struct event`` (tcpstates.h) as a :class:`TcpEvent`."""
        kind = KINDS.get(ev.kind, str(ev.kind))
        size = 4 if ev.family == AF_INET else 16
        if ev.family in (AF_INET, AF_INET6):
            laddr = fmt_addr(ev.family, ev.saddr[:size])
            raddr = fmt_addr(ev.family, ev.daddr[:size])
        else:
            laddr = raddr = "?"
        return TcpEvent(kind=kind, skaddr=ev.skaddr, pid=ev.pid, comm=ev.comm,
                        ip=6 if ev.family == AF_INET6 else 4, laddr=laddr, lport=ev.sport,
                        raddr=raddr, rport=ev.dport,
                        oldstate=tcp_state_name(ev.oldstate) if ev.oldstate else "-",
                        newstate=tcp_state_name(ev.newstate) if ev.newstate else "-",
                        ms=ev.delta_ns / 1e6, ts=ev.ts_ns / 1e9,
                        detail=_detail(kind, ev.detail, self._reasons))


class Printer:
    """BCC tcpstates' columns, or JSON lines; counts what it printed."""

    def __init__(self, *, json: bool, wide: bool, time_col: bool, timestamp: bool) -> None:
        self.json, self.wide, self.time_col, self.timestamp = json, wide, time_col, timestamp
        self.first_ts: float | None = None
        self.counts: Counter[str] = Counter()
        self.transitions: Counter[tuple[str, str]] = Counter()
        aw = 39 if wide else 15
        cw = 16 if wide else 10
        self._fmt = (f"{{sk:<16}} {{pid:<5}} {{comm:<{cw}.{cw}}} {{ip}}{{laddr:<{aw}}} "
                     f"{{lport:<5}} {{raddr:<{aw}}} {{rport:<5}} {{old:<11}} {{arrow}} "
                     f"{{new:<11}} {{ms}}")

    def _prefix(self, ts: float | None) -> str:
        out = ""
        if self.time_col:
            out += (time.strftime("%H:%M:%S") if ts is not None else "TIME") + " " * \
                (1 if ts is not None else 5)
        if self.timestamp:
            if ts is None:
                out += f"{'TIME(s)':<9} "
            else:
                if self.first_ts is None:
                    self.first_ts = ts
                out += f"{ts - self.first_ts:<9.3f} "
        return out

    def header(self) -> None:
        if self.json:
            return
        print(self._prefix(None) + self._fmt.format(
            sk="SKADDR", pid="C-PID", comm="C-COMM", ip="IP " if self.wide else "",
            laddr="LADDR", lport="LPORT", raddr="RADDR", rport="RPORT", old="OLDSTATE",
            arrow="->", new="NEWSTATE", ms="MS"), flush=True)

    def __call__(self, e: TcpEvent) -> None:
        self.counts[e.kind] += 1
        if e.kind == "state":
            self.transitions[(e.oldstate, e.newstate)] += 1
        if self.json:
            cli.print_json(e.to_dict())
            return
        if e.kind == "state":
            arrow, new, ms = "->", e.newstate, f"{e.ms:.3f}"
        else:
            arrow = "::"
            new = KIND_LABELS.get(e.kind, e.kind)
            ms = f"{e.ms:.3f}" + (f" {e.detail}" if e.detail else "")
        print(self._prefix(e.ts) + self._fmt.format(
            sk=f"{e.skaddr:x}", pid=e.pid, comm=e.comm, ip=f"{e.ip:<2} " if self.wide else "",
            laddr=e.laddr, lport=e.lport, raddr=e.raddr, rport=e.rport, old=e.oldstate,
            arrow=arrow, new=new, ms=ms), flush=True)

    def summary(self, dropped: int, seconds: float) -> None:
        data = {"type": "summary", "seconds": round(seconds, 3), "dropped": dropped,
                "state_changes": self.counts["state"],
                "retransmits": self.counts["retransmit"],
                "resets_sent": self.counts["reset_sent"],
                "resets_received": self.counts["reset_recv"],
                "transitions": {f"{a}->{b}": n for (a, b), n in self.transitions.most_common()}}
        if self.json:
            cli.print_json(data)
            return
        print(f"\n{data['state_changes']} state changes, {data['retransmits']} retransmits, "
              f"{data['resets_sent']} resets sent, {data['resets_received']} resets received "
              f"in {seconds:.1f}s" + (f", {dropped} events dropped" if dropped else ""))
        for (a, b), n in self.transitions.most_common(10):
            print(f"  {a:>11} -> {b:<11} {n}")
        sys.stdout.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="tcpstates", description="Trace TCP state changes, retransmits and resets.",
        epilog="examples:\n" + doc[2] + "\n\n" + doc[3] + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--pid", type=int, default=0,
                        help="sockets this process connects, listens on, accepts or closes")
    parser.add_argument("-a", "--addr", help="local or remote address (IPv4 or IPv6)")
    parser.add_argument("-P", "--port", type=cli.ports, action="append", metavar="PORTS",
                        help="local or remote port(s), comma-separated")
    parser.add_argument("-L", "--localport", type=cli.ports, action="append", metavar="PORTS",
                        help="local port(s), comma-separated")
    parser.add_argument("-D", "--remoteport", type=cli.ports, action="append", metavar="PORTS",
                        help="remote port(s), comma-separated")
    fam = parser.add_mutually_exclusive_group()
    fam.add_argument("-4", "--ipv4", dest="family", action="store_const", const=4,
                     help="IPv4 only")
    fam.add_argument("-6", "--ipv6", dest="family", action="store_const", const=6,
                     help="IPv6 only")
    parser.add_argument("-T", "--time", action="store_true", help="include a time column")
    parser.add_argument("-t", "--timestamp", action="store_true",
                        help="include seconds since the first event")
    parser.add_argument("-w", "--wide", action="store_true",
                        help="wide columns (fits IPv6 addresses)")
    parser.add_argument("--no-retransmits", dest="retransmits", action="store_false",
                        help="do not trace retransmits")
    parser.add_argument("--no-resets", dest="resets", action="store_false",
                        help="do not trace resets")
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.addr:
        try:
            addr_to_raw(args.addr)
        except ValueError as e:
            parser.error(str(e))
    for name in ("port", "localport", "remoteport"):
        merged = cli.flatten(getattr(args, name))
        if len(merged) > MAX_PORTS:
            parser.error(f"at most {MAX_PORTS} ports per option")
        setattr(args, name, merged)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with TcpStates(pid=args.pid, family=args.family, addr=args.addr, lports=args.localport,
                   rports=args.remoteport, ports=args.port, retransmits=args.retransmits,
                   resets=args.resets) as tool:
        printer = Printer(json=args.json, wide=args.wide, time_col=args.time,
                          timestamp=args.timestamp)
        tool.open_events(printer)
        if args.verbose:
            for link in tool.links:
                cli.info(f"attached {link.description}")
        # The ready line comes once Ctrl-C and SIGTERM are caught: a stop may follow it at once.
        with loop.stopping(args.duration) as stop:
            cli.info("Tracing TCP state changes. Hit Ctrl-C to end.")
            printer.header()
            stop.run(tool.poll)
            tool.ring_buffer_consume()
        printer.summary(tool.dropped, stop.elapsed())
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
