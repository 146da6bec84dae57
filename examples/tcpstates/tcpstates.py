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
from collections import namedtuple
from operator import itemgetter

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from _common.events import POLL_SECONDS, RingEvents, polling  # noqa: E402

from lcc import ClbcBase, loop  # noqa: E402
from lcc.btf import enum_names  # noqa: E402
from lcc.errors import LccError  # noqa: E402
from lcc.netfmt import (  # noqa: E402
    AF_INET,
    AF_INET6,
    TCP_STATES,
    AddrNames,
    addr_to_raw,
    tcp_state_name,
)

MAX_PORTS = 8  # tcpstates.h
RING_MIB = 4  # --ring-mib's default: the smallest delivering 100% of 20,000 connects

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


class TcpEvent(namedtuple("TcpEvent", (
        "kind",      # str: state | retransmit | reset_sent | reset_recv
        "skaddr",    # int
        "pid",       # int: task on CPU at the time
        "comm",      # str
        "ip",        # int: 4 or 6
        "laddr",     # str
        "lport",     # int
        "raddr",     # str
        "rport",     # int
        "oldstate",  # str: for other kinds, the socket's state
        "newstate",  # str
        "ms",        # float: time in oldstate (other kinds: in the current state so far)
        "ts",        # float: seconds of CLOCK_MONOTONIC
        "detail",    # str: reset reason; retransmit error ("" by default)
        ), defaults=("",))):
    """A state change, retransmit or reset, as the tool reports it (immutable).

    A ``collections.namedtuple`` rather than a dataclass or a
    ``typing.NamedTuple``: importing ``dataclasses`` (with ``inspect``) costs
    about 10 ms of every start, ``typing`` about 3 ms.
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        d["skaddr"] = f"{self.skaddr:x}"
        return {"type": d.pop("kind"), **d}


def _detail(kind: str, value: int, reasons: dict[int, str]) -> str:
    if kind == "reset_sent":
        return reasons.get(value, "") if value >= 0 else ""
    if kind == "retransmit" and value:
        return f"error {value}"
    return ""


# State numbers -> names, 0 (no state) included: one dict lookup per event.
_STATES = {0: "-", **TCP_STATES}


def _state(n: int) -> str:
    name = _STATES.get(n)
    return name if name is not None else tcp_state_name(n)


# What Printer reads of each struct event (tcpstates.h), in one itemgetter call.
_LINE_MEMBERS = ("kind", "oldstate", "newstate", "skaddr", "pid", "comm", "family", "saddr",
                 "sport", "daddr", "dport", "delta_ns")
# -w's IP column: the family's number, padded.
_IP_COLUMN = {AF_INET6: "6  "}


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
        self._reasons_cache: dict[int, str] | None = None
        self.addr = AddrNames()  # (family, raw address) -> text, remembered

    @property
    def reasons(self) -> dict[int, str]:
        """``enum sk_rst_reason`` names, read from the kernel's BTF at the first reset."""
        if self._reasons_cache is None:
            self._reasons_cache = _reset_reasons()
        return self._reasons_cache

    def open_events(self, callback: Callable[[TcpEvent], Any], *, raw: bool = False) -> None:
        """Deliver each event to ``callback`` as a :class:`TcpEvent`.

        ``raw=True`` hands on the decoded ``struct event`` (tcpstates.h)
        instead, with no per-event object built: what the printer uses, to
        keep up with tens of thousands of events a second.
        """
        if raw:
            self.maps["events"].open_ring_buffer(callback)
        else:
            self.maps["events"].open_ring_buffer(lambda ev: callback(self.decode(ev)))

    def detail(self, ev: Any) -> str:
        """An event's detail text: the reset reason or the retransmit error."""
        if ev.kind == 1:
            return ""
        kind = KINDS.get(ev.kind, "")
        # The reset reasons are read from BTF at the first reset sent (0 is a reason too).
        return _detail(kind, ev.detail, self.reasons if kind == "reset_sent" else {})

    def decode(self, ev: Any) -> TcpEvent:
        """A decoded ``struct event`` (tcpstates.h) as a :class:`TcpEvent`."""
        kind = KINDS.get(ev.kind, str(ev.kind))
        fam = ev.family
        return TcpEvent(kind=kind, skaddr=ev.skaddr, pid=ev.pid, comm=ev.comm,
                        ip=6 if fam == AF_INET6 else 4, laddr=self.addr(fam, ev.saddr),
                        lport=ev.sport, raddr=self.addr(fam, ev.daddr), rport=ev.dport,
                        oldstate=_state(ev.oldstate), newstate=_state(ev.newstate),
                        ms=ev.delta_ns / 1e6, ts=ev.ts_ns / 1e9, detail=self.detail(ev))

    def event_dict(self, ev: Any) -> dict[str, Any]:
        """``decode(ev).to_dict()``, without the TcpEvent in between (for --json)."""
        fam = ev.family
        return {"type": KINDS.get(ev.kind, str(ev.kind)), "skaddr": f"{ev.skaddr:x}",
                "pid": ev.pid, "comm": ev.comm, "ip": 6 if fam == AF_INET6 else 4,
                "laddr": self.addr(fam, ev.saddr), "lport": ev.sport,
                "raddr": self.addr(fam, ev.daddr), "rport": ev.dport,
                "oldstate": _state(ev.oldstate), "newstate": _state(ev.newstate),
                "ms": ev.delta_ns / 1e6, "ts": ev.ts_ns / 1e9, "detail": self.detail(ev)}


class Printer:
    """BCC tcpstates' columns, or JSON lines; counts what it printed.

    Called with each decoded ``struct event`` (``open_events(raw=True)``).
    Lines go to a buffered stdout: :meth:`flush` once per poll, so that a
    burst of events costs one write, not one per line.
    """

    def __init__(self, tool: TcpStates, *, json: bool, wide: bool, time_col: bool,
                 timestamp: bool) -> None:
        self.tool = tool
        self.json, self.wide, self.time_col, self.timestamp = json, wide, time_col, timestamp
        self.first_ts: float | None = None
        self.kinds: dict[int, int] = {}
        self.transitions: dict[tuple[int, int], int] = {}  # (old, new) state numbers
        self.write = sys.stdout.write
        self.flush = sys.stdout.flush
        aw = 39 if wide else 15
        cw = 16 if wide else 10
        self._fmt = (f"{{sk:<16}} {{pid:<5}} {{comm:<{cw}.{cw}}} {{ip}}{{laddr:<{aw}}} "
                     f"{{lport:<5}} {{raddr:<{aw}}} {{rport:<5}} {{old:<11}} {{arrow}} "
                     f"{{new:<11}} {{ms}}")
        # The same columns as one %-format, for the per-event path; state
        # changes (most events) format their MS column in it too.
        self._line = (f"%-16x %-5d %-{cw}.{cw}s %s%-{aw}s %-5d %-{aw}s %-5d %-11s %s "
                      f"%-11s %s\n")
        self._state_line = (f"%-16x %-5d %-{cw}.{cw}s %s%-{aw}s %-5d %-{aw}s %-5d %-11s -> "
                            f"%-11s %.3f\n")
        self._members: Any = None  # itemgetter of the members a line needs, at the 1st event
        self._prefixed = time_col or timestamp
        if json:  # imported only for --json: the table's start does without it
            from json import JSONEncoder
            self._dumps = JSONEncoder(separators=(",", ":")).encode

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

    def __call__(self, ev: Any) -> None:
        # Once per event: the members taken in one C call, plain lookups and
        # one format, no object per event.
        get = self._members
        if get is None:
            get = self._members = itemgetter(*map(ev._fields.index, _LINE_MEMBERS))
        # (of the plain tuple: the event class's own __getitem__ is Python code)
        kind, old, new, skaddr, pid, comm, fam, saddr, sport, daddr, dport, delta = get(tuple(ev))
        kinds = self.kinds
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == 1:
            key = (old, new)
            self.transitions[key] = self.transitions.get(key, 0) + 1
        if self.json:
            self.write(self._dumps(self.tool.event_dict(ev)) + "\n")
            return
        addr = self.tool.addr
        ip = (_IP_COLUMN.get(fam, "4  ") if self.wide else "")
        states = _STATES
        if kind == 1:
            line = self._state_line % (
                skaddr, pid, comm, ip, addr(fam, saddr), sport, addr(fam, daddr), dport,
                states.get(old) or _state(old), states.get(new) or _state(new), delta / 1e6)
        else:
            name = KINDS.get(kind, str(kind))
            detail = self.tool.detail(ev)
            ms = f"{delta / 1e6:.3f}" + (f" {detail}" if detail else "")
            line = self._line % (
                skaddr, pid, comm, ip, addr(fam, saddr), sport, addr(fam, daddr), dport,
                _state(old), "::", KIND_LABELS.get(name, name), ms)
        self.write(self._prefix(ev.ts_ns / 1e9) + line if self._prefixed else line)

    def summary(self, dropped: int, seconds: float) -> None:
        kinds = self.kinds
        ranked = sorted(self.transitions.items(), key=lambda kv: -kv[1])
        data = {"type": "summary", "seconds": round(seconds, 3), "dropped": dropped,
                "state_changes": kinds.get(1, 0),
                "retransmits": kinds.get(2, 0),
                "resets_sent": kinds.get(3, 0),
                "resets_received": kinds.get(4, 0),
                "transitions": {f"{_state(a)}->{_state(b)}": n for (a, b), n in ranked}}
        if self.json:
            cli.print_json(data)
            return
        print(f"\n{data['state_changes']} state changes, {data['retransmits']} retransmits, "
              f"{data['resets_sent']} resets sent, {data['resets_received']} resets received "
              f"in {seconds:.1f}s" + (f", {dropped} events dropped" if dropped else ""))
        for (a, b), n in ranked[:10]:
            print(f"  {_state(a):>11} -> {_state(b):<11} {n}")
        sys.stdout.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="tcpstates", description="Trace TCP state changes, retransmits and resets.",
        epilog="examples:\n" + doc[2] + "\n\n" + doc[3] + "\n",
        formatter_class=cli.formatter(argparse.RawDescriptionHelpFormatter))
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
    cli.add_ring_arg(parser, RING_MIB)
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
                   resets=args.resets, map_sizes=cli.ring_sizes(args)) as tool:
        printer = Printer(tool, json=args.json, wide=args.wide, time_col=args.time,
                          timestamp=args.timestamp)
        tool.open_events(printer, raw=True)
        if args.verbose:
            for link in tool.links:
                cli.info(f"attached {link.description}")
        # The ready line comes once Ctrl-C and SIGTERM are caught: a stop may follow it at once.
        with loop.stopping(args.duration) as stop:
            cli.info("Tracing TCP state changes. Hit Ctrl-C to end.")
            printer.header()
            stop.run(polling(tool, printer.flush), tick=POLL_SECONDS)
            tool.ring_buffer_consume()
            printer.flush()
        printer.summary(tool.dropped, stop.elapsed())
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
