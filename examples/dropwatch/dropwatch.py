#!/usr/bin/env python3
"""dropwatch: every packet the kernel drops, why, where, and (-s) from which kernel stack.

Each drop seen at the ``skb:kfree_skb`` tracepoint is printed with its drop
reason (named from the running kernel's ``enum skb_drop_reason`` in its BTF,
so new reasons need no update here), the kernel function that dropped it
(``symbol+0xoff`` from /proc/kallsyms) and its protocol and addresses.
Packets freed after normal use (SKB_CONSUMED) are not drops and are skipped;
so, unless ``--all-reasons`` or ``--reason`` is given, are the packets a
socket still held when it was closed (``NORMAL_CLOSE_REASONS``: SOCKET_CLOSE,
TCP_CLOSE, QUEUE_PURGE), which every ordinary close of a busy socket causes.

    dropwatch                     # every drop
    dropwatch -P tcp -p 80        # TCP drops to or from port 80
    dropwatch -a 10.0.0.1         # drops to or from an address (IPv4 or IPv6)
    dropwatch -s                  # also sum drops by kernel stack, top stacks at exit
    dropwatch -s -q -d 10         # only the top stacks after 10 seconds
    dropwatch --json              # one JSON object per drop, then the summary
    dropwatch -w                  # also the network namespace, device, pid and command
    dropwatch --reason NO_SOCKET  # only these reasons (comma-separated, repeatable)
    dropwatch --exclude-reason NOT_SPECIFIED   # all but these (and the normal-close ones)
    dropwatch -s -f -d 10         # folded stacks for flamegraph.pl, speedscope, inferno
    dropwatch -s --svg drops.svg  # an interactive flame graph of the drop stacks

Filters apply in the kernel.  Requires root (or CAP_BPF + CAP_PERFMON) and a
kernel with BTF.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any, Callable, NamedTuple, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from _common import flameout  # noqa: E402
from _common.events import POLL_SECONDS, RingEvents, polling  # noqa: E402

from lcc import ClbcBase, Fallback, LccError, loop  # noqa: E402
from lcc.btf import enum_names  # noqa: E402
from lcc.errors import BtfError, SymbolsUnavailable  # noqa: E402
from lcc.netfmt import (  # noqa: E402
    AF_INET,
    AF_INET6,
    AddrNames,
    addr_to_raw,
    eth_proto_name,
    fmt_endpoint,
    ip_proto_name,
    ip_proto_number,
)

HERE = os.path.dirname(os.path.abspath(__file__))
ALTERNATIVES = ("btf_kfree_skb", "raw_kfree_skb", "tp_kfree_skb")
RING_MIB = 4  # --ring-mib's default: the smallest delivering 100% of 50,000 UDP drops
PORTLESS = {"ICMP", "ICMPV6"}
# What a non-IP packet is, by the family of the socket it belonged to.
SOCKET_FAMILIES = {1: "UNIX", 16: "NETLINK", 17: "PACKET", 40: "VSOCK", 44: "XDP"}
# The innermost frames of a drop's stack are the tracing machinery and the free
# function itself; a stack is shown from the caller that dropped the packet.
TRACING_FRAMES = ("bpf_prog_", "bpf_trace_run", "__bpf_trace_", "perf_trace_", "trace_event_",
                  "__traceiter_", "perf_")
FREE_FUNCTIONS = ("sk_skb_reason_drop", "kfree_skb_reason", "kfree_skb_list_reason",
                  "__kfree_skb", "kfree_skb", "__dev_kfree_skb_any", "dev_kfree_skb_any_reason")
# Packets still queued on a socket when it is closed: freed with a reason, but
# the normal end of a connection rather than a loss.  Left out by default.
NORMAL_CLOSE_REASONS = ("SOCKET_CLOSE", "TCP_CLOSE", "QUEUE_PURGE")
REASON_ONLY, REASON_EXCEPT = 1, 2  # reason_filter in dropwatch.bpf.c
TCP_FLAGS = ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"))


class DropReasons:
    """Drop reason codes -> names, from the kernel's BTF (``enum skb_drop_reason``).

    Names lose their ``SKB_DROP_REASON_`` prefix, as the tracepoint prints
    them (``NO_SOCKET``).  Codes of subsystems (high 16 bits) are named
    ``<SUBSYS>:<code>`` from ``enum skb_drop_reason_subsys``.
    """

    def __init__(self, names: dict[int, str] | None = None,
                 subsystems: dict[int, str] | None = None) -> None:
        if names is None:
            names = enum_names("skb_drop_reason")
        if subsystems is None:
            try:
                subsystems = enum_names("skb_drop_reason_subsys")
            except BtfError:
                subsystems = {}
        self.names = {v: self._short(n) for v, n in names.items()
                      if not n.startswith("SKB_DROP_REASON_SUBSYS")}
        self.subsystems = {v: n.removeprefix("SKB_DROP_REASON_SUBSYS_")
                           for v, n in subsystems.items()}

    @staticmethod
    def _short(name: str) -> str:
        for prefix in ("SKB_DROP_REASON_", "SKB_"):
            if name.startswith(prefix):
                return name[len(prefix):]
        return name

    def code(self, name: str) -> int:
        """The code of a reason name (``NO_SOCKET``, any case, prefix optional).

        Raises LccError naming the reason when this kernel does not have it.
        """
        want = self._short(name.strip().upper())
        for code, known in self.names.items():
            if known == want:
                return code
        raise LccError(f"unknown drop reason {name!r}",
                       hint="this kernel's reasons are the names in enum skb_drop_reason "
                            "(see /sys/kernel/tracing/events/skb/kfree_skb/format)")

    def __call__(self, code: int) -> str:
        name = self.names.get(code)
        if name is not None:
            return name
        sub = code >> 16
        if sub:
            return f"{self.subsystems.get(sub, f'SUBSYS{sub}')}:{code & 0xFFFF}"
        return f"UNKNOWN({code})"


def trim_stack(frames: list[str]) -> list[str]:
    """``frames`` (innermost first) from the function that dropped the packet outwards."""
    names = [f.split("+", 1)[0] for f in frames]
    last_free = max((i for i, n in enumerate(names[:8]) if n in FREE_FUNCTIONS), default=-1)
    if last_free >= 0:
        return frames[last_free + 1:]
    i = 0
    while i < len(frames) and names[i].startswith(TRACING_FRAMES):
        i += 1
    return frames[i:]


def tcp_flags_text(flags: int) -> str:
    return "".join(ch for bit, ch in TCP_FLAGS if flags & bit)


_FLAGS_TEXT = [tcp_flags_text(f) for f in range(256)]
_FAMILIES = {AF_INET: 4, AF_INET6: 6}


def drop_fields(ev: Any, reasons: Callable[[int], str], symbolize: Callable[[int], str],
                addr: Callable[[int, Any], str]) -> dict[str, Any]:
    """The fields of a :class:`Drop` from a decoded ``struct drop_event`` (dropwatch.h).

    ``addr(family, raw)`` formats an address (:class:`lcc.netfmt.AddrNames`
    remembers them); once per event, so plain lookups only.
    """
    fam = ev.family
    ip = fam in _FAMILIES
    if ip:
        proto = ip_proto_name(ev.l4_proto)
    elif ev.l3_proto:
        proto = eth_proto_name(ev.l3_proto)
    else:
        proto = SOCKET_FAMILIES.get(ev.sk_family, "?")
    ports = ip and proto not in PORTLESS and bool(ev.sport or ev.dport or proto in ("TCP", "UDP"))
    return {"ts_ns": ev.ts, "reason": reasons(ev.reason), "reason_code": ev.reason,
            "location": symbolize(ev.location), "location_addr": ev.location, "proto": proto,
            "family": _FAMILIES.get(fam, 0),
            "saddr": addr(fam, ev.saddr) if ip else None,
            "sport": ev.sport if ports else None,
            "daddr": addr(fam, ev.daddr) if ip else None,
            "dport": ev.dport if ports else None,
            "tcp_flags": _FLAGS_TEXT[ev.tcp_flags & 0xFF] if ip and ev.l4_proto == 6 else None,
            "ifindex": ev.ifindex, "netns": ev.netns, "pid": ev.pid, "comm": ev.comm,
            "stack_id": ev.stack_id}


def _endpoint(addr: str | None, port: int | None) -> str:
    if addr is None:
        return "-"
    return fmt_endpoint(addr, port) if port is not None else addr


# Records are NamedTuples rather than dataclasses: importing ``dataclasses``
# (and with it ``inspect``) costs about 10 ms of every start.

class Drop(NamedTuple):
    """One dropped packet as the tool reports it."""

    ts_ns: int
    reason: str
    reason_code: int
    location: str          # symbol+0xoff
    location_addr: int
    proto: str             # TCP, UDP, ICMP...; the Ethernet protocol or socket family if not IP
    family: int            # 4, 6 or 0
    saddr: str | None
    sport: int | None
    daddr: str | None
    dport: int | None
    tcp_flags: str | None
    ifindex: int
    netns: int
    pid: int
    comm: str
    stack_id: int

    @classmethod
    def from_event(cls, ev: Any, reasons: DropReasons,
                   symbolize: Callable[[int], str]) -> Drop:
        """Build from a decoded ``struct drop_event`` (dropwatch.h)."""
        return cls(**drop_fields(ev, reasons, symbolize, AddrNames()))

    def endpoint(self, which: str) -> str:
        if which == "s":
            return _endpoint(self.saddr, self.sport)
        return _endpoint(self.daddr, self.dport)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "drop", "time": _wall(self.ts_ns), **self._asdict()}


class StackSum(NamedTuple):
    """Drops with one reason counted under one kernel stack (-s)."""

    count: int
    reason: str
    stack_id: int
    frames: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"type": "stack", **self._asdict()}


class DropWatch(RingEvents, ClbcBase):
    """The BPF side: drops at skb:kfree_skb, filtered in the kernel.

    ``proto``: an IP protocol name or number; ``address``: an IPv4 or IPv6
    address matching source or destination; ``port``: source or destination
    port; ``stacks``: sum drops by kernel stack (see :meth:`stack_sums`);
    ``events``: send one event per drop (turn off to only sum stacks);
    ``kinds``: the program kinds to try, best first among ``ALTERNATIVES``
    (``btf``, ``raw``, ``tp``); ``reasons``: report only drops with these
    reasons (names); ``exclude_reasons``: report all drops but those (the
    default leaves out :data:`NORMAL_CLOSE_REASONS`; pass ``()`` for every
    reason).  Reasons are filtered in the kernel; an unknown name raises
    LccError.  Other keyword arguments go to :class:`lcc.ClbcBase`.
    Requires root (or CAP_BPF + CAP_PERFMON).
    """

    def __init__(self, *, proto: str | int | None = None, address: str | None = None,
                 port: int | None = None, stacks: bool = False, events: bool = True,
                 kinds: Sequence[str] = ("btf", "raw", "tp"),
                 reasons: Sequence[str] | None = None,
                 exclude_reasons: Sequence[str] | None = NORMAL_CLOSE_REASONS,
                 **kwargs: Any) -> None:
        self.reasons = DropReasons()
        codes: list[int] = []
        mode = 0
        if reasons:
            mode, codes = REASON_ONLY, [self.reasons.code(r) for r in reasons]
        elif exclude_reasons:
            # The defaults may be missing from an older kernel: skip those quietly.
            defaults = set(NORMAL_CLOSE_REASONS)
            for r in exclude_reasons:
                try:
                    codes.append(self.reasons.code(r))
                except LccError:
                    if r not in defaults:
                        raise
            mode = REASON_EXCEPT if codes else 0
        rodata: dict[str, Any] = {"want_stacks": bool(stacks), "want_events": bool(events),
                                  "reason_filter": mode}
        if proto is not None:
            rodata["filter_proto"] = ip_proto_number(proto)
        if port is not None:
            if not 0 < int(port) < 65536:
                raise ValueError(f"port out of range: {port}")
            rodata["filter_port"] = int(port)
        if address is not None:
            family, raw = addr_to_raw(address)
            rodata["filter_family"] = family
            rodata["filter_addr"] = list(raw.ljust(16, b"\0"))
        kept = [a for a in ALTERNATIVES if a.split("_", 1)[0] in kinds]
        if not kept:
            raise ValueError(f"no kfree_skb program of kinds {', '.join(kinds)}")
        self.alternatives = Fallback(*kept)
        attach = kwargs.pop("attach", True)
        super().__init__(os.path.join(HERE, "dropwatch.bpf.c"), rodata=rodata,
                         fallback=self.alternatives, attach=False,
                         programs=lambda prog: prog.name in kept, **kwargs)
        # The reason set is in place before the first drop can be seen.
        for code in codes:
            self.maps["reasons"][code] = 1
        if attach:
            self.attach_all()
        self._ksyms: Any = None  # lcc.symbols, imported at the first drop: not part of the start
        self._locations: dict[int, str] = {}  # drops come from a few places: remembered
        self.addr = AddrNames()
        self._own_netns = _netns_inode("self")
        self._devnames: dict[int, str] = {}

    def symbolize(self, addr: int) -> str:
        """``func+0xoff`` of a kernel address (hex when kallsyms is hidden)."""
        name = self._locations.get(addr)
        if name is None:
            if self._ksyms is None:
                from lcc.symbols import kernel_symbols
                self._ksyms = kernel_symbols()
            try:
                name = self._ksyms.format(addr)
            except SymbolsUnavailable:
                name = f"{addr:#x}"
            if len(self._locations) >= 65536:
                self._locations.clear()
            self._locations[addr] = name
        return name

    def fields(self, ev: Any) -> dict[str, Any]:
        """The fields of a :class:`Drop` from a decoded event, with no Drop built."""
        return drop_fields(ev, self.reasons, self.symbolize, self.addr)

    def device(self, d: Drop | dict[str, Any]) -> str:
        """The name of a drop's device when it is in this namespace, else ``if<index>``
        (``-`` for none); ``d`` is a :class:`Drop` or its :meth:`fields`."""
        ifindex, netns = (d["ifindex"], d["netns"]) if isinstance(d, dict) else \
            (d.ifindex, d.netns)
        if not ifindex:
            return "-"
        if netns != self._own_netns:
            return f"if{ifindex}"
        name = self._devnames.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:  # gone since
                name = f"if{ifindex}"
            self._devnames[ifindex] = name
        return name

    def folded(self) -> dict[str, int]:
        """Drop counts by stack as ``{"root;...;dropper;REASON": drops}`` (see lcc.flame.fold):
        the drop reason is the top frame, so that the paths that lead to a drop merge."""
        from lcc.flame import fold
        return fold(([f"[{s.reason}]", *s.frames], s.count) for s in self.stack_sums())

    def open_events(self, callback: Callable[[Drop], Any], *, raw: bool = False) -> None:
        """Deliver each drop to ``callback`` as a :class:`Drop`.

        ``raw=True`` hands on the decoded ``struct drop_event`` instead (no
        per-event object; :meth:`fields` describes it): what the printer
        uses, to keep up with a drop storm.
        """
        if raw:
            self.maps["events"].open_ring_buffer(callback)
        else:
            self.maps["events"].open_ring_buffer(lambda ev: callback(Drop(**self.fields(ev))))

    def stack_sums(self) -> list[StackSum]:
        """Drops per (kernel stack, reason), most first (needs ``stacks=True``)."""
        stacks = self.maps["stacks"]
        out = []
        for key, count in self.maps["stack_counts"].items():
            frames = trim_stack(stacks.frames(key.stack_id, markers=False))
            out.append(StackSum(count, self.reasons(key.reason), key.stack_id, frames))
        return sorted(out, key=lambda s: (-s.count, s.reason, s.stack_id))


def _netns_inode(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return 0


class WallClock:
    """CLOCK_MONOTONIC nanoseconds -> local ``HH:MM:SS.micros``, cheaply per event.

    The offset between the clocks is read once (it moves only when the
    wall clock is set) and each second's ``HH:MM:SS`` is formatted once.
    """

    def __init__(self) -> None:
        self.offset = time.time() - time.monotonic()
        self._second = -1
        self._text = ""

    def __call__(self, mono_ns: int) -> str:
        wall = self.offset + mono_ns / 1e9
        sec = int(wall)
        if sec != self._second:
            self._second, self._text = sec, time.strftime("%H:%M:%S", time.localtime(sec))
        return f"{self._text}.{int((wall - sec) * 1e6):06d}"


def _wall(mono_ns: int) -> str:
    return WallClock()(mono_ns)


class Printer:
    """One line (or JSON object) per drop; the summary and the top stacks at exit.

    Called with each drop's :meth:`DropWatch.fields` (``fields``) applied to
    the decoded event (``open_events(raw=True)``), or with a :class:`Drop`.
    Lines go to a buffered stdout: :meth:`flush` once per poll.
    """

    def __init__(self, *, json: bool, quiet: bool = False,
                 wide: Callable[[Any], str] | None = None,
                 fields: Callable[[Any], dict[str, Any]] | None = None) -> None:
        self.json, self.quiet = json, quiet
        # -w: the device namer; adds NETNS, DEVICE, PID and COMM columns.
        self.wide = wide
        self.fields = fields
        self.by_reason: dict[str, int] = {}
        self.count = 0
        self.wall = WallClock()
        self.write = sys.stdout.write
        self.flush = sys.stdout.flush
        if json:  # imported only for --json: the table's start does without it
            from json import JSONEncoder
            self._dumps = JSONEncoder(separators=(",", ":")).encode

    def header(self) -> None:
        if not self.json and not self.quiet:
            extra = (f" {'NETNS':<10} {'DEVICE':<12} {'PID':<7} COMM" if self.wide else "")
            loc = f"{'LOCATION':<40}" if self.wide else "LOCATION"
            print(f"{'TIME':<15} {'PROTO':<8} {'SOURCE':<24} {'DESTINATION':<24} "
                  f"{'REASON':<22} {loc}{extra}", flush=True)

    def __call__(self, ev: Any) -> None:
        d = self.fields(ev) if self.fields is not None else ev._asdict()
        self.count += 1
        reason = d["reason"]
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if self.quiet:
            return
        if self.json:
            obj = {"type": "drop", "time": self.wall(d["ts_ns"]), **d}
            if self.wide:
                obj["device"] = self.wide(d)
            self.write(self._dumps(obj) + "\n")
            return
        flags = d["tcp_flags"]
        proto = d["proto"] + (f"[{flags}]" if flags else "")
        line = (f"{self.wall(d['ts_ns']):<15} {proto:<8} "
                f"{_endpoint(d['saddr'], d['sport']):<24} "
                f"{_endpoint(d['daddr'], d['dport']):<24} {reason:<22} ")
        if self.wide:
            line += (f"{d['location']:<40} {d['netns'] or '-':<10} {self.wide(d):<12} "
                     f"{d['pid'] or '-':<7} {d['comm'] or '-'}")
        else:
            line += d["location"]
        self.write(line + "\n")

    def summary(self, *, seconds: float, dropped: int, stacks: list[StackSum] | None,
                top: int, counted_by_stacks: bool = False) -> None:
        if stacks is not None and counted_by_stacks:
            # Without events the counts come from the stack sums.
            self.by_reason = {}
            for s in stacks:
                self.by_reason[s.reason] = self.by_reason.get(s.reason, 0) + s.count
            self.count = sum(s.count for s in stacks)
        ranked = sorted(self.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
        if self.json:
            for s in (stacks or [])[:top]:
                cli.print_json(s.to_dict())
            cli.print_json({"type": "summary", "drops": self.count, "seconds": round(seconds, 3),
                            "by_reason": dict(ranked), "dropped_events": dropped,
                            "stacks": len(stacks) if stacks is not None else None})
            return
        if stacks is not None:
            shown = stacks[:top]
            print(f"\nTop {len(shown)} of {len(stacks)} kernel stacks by drops:")
            for s in shown:
                print(f"\n{s.count} drop{'s' if s.count != 1 else ''}, {s.reason}:")
                for f in s.frames or ["(stack unavailable)"]:
                    print(f"    {f}")
        print(f"\n{self.count} drop{'s' if self.count != 1 else ''} in {seconds:.1f}s")
        for reason, n in ranked:
            print(f"  {reason:<28} {n}")
        if dropped:
            print(f"{dropped} events lost (ring buffer full)")
        sys.stdout.flush()


def _split_names(items: list[str] | None) -> list[str]:
    """Repeated, comma-separated option values as one list (``-x A,B -x C``)."""
    return [r.strip() for item in (items or []) for r in item.split(",") if r.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    doc = __doc__.split("\n\n")
    p = argparse.ArgumentParser(prog="dropwatch", description=doc[0],
                                epilog="examples:\n" + doc[2] + "\n",
                                formatter_class=cli.formatter(argparse.RawDescriptionHelpFormatter))
    p.add_argument("-P", "--proto", metavar="PROTO",
                   help="only this IP protocol (tcp, udp, icmp, ... or a number)")
    p.add_argument("-a", "--addr", metavar="ADDR",
                   help="only packets from or to this IPv4/IPv6 address")
    p.add_argument("-p", "--port", type=int, help="only packets from or to this port")
    p.add_argument("-s", "--stacks", action="store_true",
                   help="sum drops by kernel stack and print the top stacks at exit")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no line per drop (with -s: only the stacks and the summary)")
    p.add_argument("--top", type=int, default=10, help="stacks to print with -s (default 10)")
    p.add_argument("-w", "--wide", action="store_true",
                   help="also the network namespace (inode), device, pid and command; pid "
                        "and command are the task running when the packet was dropped "
                        "(often not its owner: softirq work runs in whatever task it interrupts)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--reason", action="append", metavar="REASON[,...]",
                       help="only drops with these reasons (e.g. NO_SOCKET,NETFILTER_DROP)")
    which.add_argument("--exclude-reason", action="append", metavar="REASON[,...]",
                       help="leave out drops with these reasons, besides "
                            + ", ".join(NORMAL_CLOSE_REASONS))
    p.add_argument("--all-reasons", action="store_true",
                   help="also the packets a socket held when closed ("
                        + ", ".join(NORMAL_CLOSE_REASONS) + "), left out by default")
    flameout.add_flame_args(p)
    cli.add_ring_arg(p, RING_MIB)
    cli.add_common_args(p)
    args = p.parse_args(argv)
    flameout.check_flame_args(p, args)
    if (args.folded or args.svg) and not args.stacks:
        p.error("-f/--folded and --svg draw the kernel stacks: add -s")
    args.reason = _split_names(args.reason)
    args.exclude_reason = _split_names(args.exclude_reason)
    if args.proto is not None:
        try:
            ip_proto_number(args.proto)
        except ValueError as e:
            p.error(str(e))
    if args.addr is not None:
        try:
            addr_to_raw(args.addr)
        except ValueError as e:
            p.error(str(e))
    if args.port is not None and not 0 < args.port < 65536:
        p.error(f"port out of range: {args.port}")
    if args.top < 1:
        p.error("--top must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # -s -q and -s -f need no events at all: the stack sums hold the counts.
    events = not ((args.quiet or args.folded) and args.stacks)
    excluded = [] if args.all_reasons else [*NORMAL_CLOSE_REASONS, *args.exclude_reason]
    with DropWatch(proto=args.proto, address=args.addr, port=args.port, stacks=args.stacks,
                   events=events, reasons=args.reason, exclude_reasons=excluded,
                   map_sizes=cli.ring_sizes(args)) as tool:
        cli.report_fallbacks(tool, args.verbose)
        printer = Printer(json=args.json, quiet=args.quiet or args.folded,
                          wide=tool.device if args.wide else None, fields=tool.fields)
        if events:
            tool.open_events(printer, raw=True)
        # The ready line comes once Ctrl-C and SIGTERM are caught: a stop may follow it at once.
        with loop.stopping(args.duration) as stop:
            cli.info("Tracing packet drops. Hit Ctrl-C to end.")
            printer.header()
            if not events:
                stop.run()  # counting only: nothing to poll
            else:
                stop.run(polling(tool, printer.flush), tick=POLL_SECONDS)
                tool.ring_buffer_consume()  # what arrived before the stop
                printer.flush()
        if not args.folded:
            printer.summary(seconds=stop.elapsed(), dropped=tool.dropped,
                            stacks=tool.stack_sums() if args.stacks else None, top=args.top,
                            counted_by_stacks=not events)
        if args.folded or args.svg:
            flameout.write_flame(args, tool.folded(), title="Packet drops by kernel stack",
                                 unit="drops")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
