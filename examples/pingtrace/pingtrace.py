#!/usr/bin/env python3
"""pingtrace: ICMP echo latency broken into the stages of the kernel's network stack.

Three ways to run it:

    pingtrace 198.18.0.2 -c 10          # active: send echo requests from a raw
                                        # socket, one row of stage times per probe,
                                        # then a summary that flags spikes
    pingtrace 198.18.0.2 -c 10 --peer   # ...with the peer host's stages, reported
                                        # by `pingtrace --server` running there
    pingtrace --server                  # on the peer: report its stages to probers
    pingtrace -a 198.18.0.2             # passive: follow anyone's pings to/from
                                        # an address, one line per send/receive

Stages (microseconds), in the order a probe meets them:

    send     sendto() entry to the device layer: ICMP, routing, IP output
    qdisc    device queue until the driver starts transmitting
    remote   transmit start to the reply's arrival at a device (without --peer)
    wire     'remote' minus the peer's stages (with --peer; both directions)
    p.devrx p.iprx p.icmp p.iptx p.qdisc
             the peer's: receive backlog, IP receive, ICMP echo handling up to
             the reply's route, reply IP output, reply device queue
    devrx    driver receive (netif_rx/GRO) until netif_receive_skb
    iprx     IP receive up to the input route lookup
    deliver  local delivery until the reply is queued on the socket
    wakeup   until the reading process is woken (absent if it was not asleep)
    sched    until it runs and copies the reply
    recv     until recvfrom() returns
    app      the prober's own time around the two syscalls (RTT minus the above)

A stage shows '-' when its end point was not seen; the next stage then
covers its time, so the stages of a row always add up to its RTT.

Only IPv4 echo requests and replies are traced.  Each instance follows its
own network namespace (--all-netns: every namespace).  Requires root (or
CAP_BPF + CAP_PERFMON + CAP_NET_RAW) and a kernel with BTF.
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import sys
import time
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from _common.events import RingEvents  # noqa: E402

import timeline as tl  # noqa: E402
from peer import DEFAULT_PORT, PeerClient, PeerServer  # noqa: E402
from prober import Probe, Prober  # noqa: E402
from report import ActiveTable, WatchPrinter  # noqa: E402

from lcc import ClbcBase, Fallback, LccError, loop  # noqa: E402
from lcc.netfmt import ipv4_raw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Each hook's programs, best first: tp_btf, raw_tp, then the classic tracepoint
# (or, for sk_data_ready, which only 6.6+ kernels have, a kprobe).
SKB_HOOKS = ("net_dev_queue", "net_dev_start_xmit", "net_dev_xmit", "netif_rx",
             "napi_gro_receive_entry", "netif_receive_skb", "fib_table_lookup",
             "sched_wakeup", "skb_copy_datagram_iovec")


KINDS = ("btf", "raw", "tp", "kp")   # tp_btf, raw_tp, tracepoint, kprobe


def alternatives(kinds: Sequence[str] = KINDS) -> tuple[list[Fallback], set[str]]:
    """One Fallback per hook, keeping the program kinds in ``kinds`` where a hook has
    them, and the names of the programs left out (which must not load either)."""
    hooks = [(f"btf_{h}", f"raw_{h}", f"tp_{h}") for h in SKB_HOOKS]
    hooks.append(("btf_sk_data_ready", "raw_sk_data_ready", "kp_sock_def_readable"))
    fallbacks, left_out = [], set()
    for names in hooks:
        kept = [n for n in names if n.split("_", 1)[0] in kinds] or list(names)
        fallbacks.append(Fallback(*kept))
        left_out.update(set(names) - set(kept))
    return fallbacks, left_out


def own_netns() -> int:
    """Inode of this process's network namespace (what the kernel calls net->ns.inum)."""
    return os.stat("/proc/self/ns/net").st_ino


class PingTrace(RingEvents, ClbcBase):
    """The BPF side: per-stage timestamps of ICMP echo packets.

    ``netns``: follow this network namespace inode only (0: every one);
    ``address``: only echoes to or from this IPv4 address; ``icmp_id``: only
    this echo id.  All three filter in the kernel.  ``kinds`` limits the
    program kinds tried for each hook (see :data:`KINDS`; a hook without any
    of them keeps all of its own).  Other keyword arguments go to
    :class:`lcc.ClbcBase`.  Requires root (or CAP_BPF + CAP_PERFMON).
    """

    def __init__(self, *, netns: int = 0, address: str | None = None,
                 icmp_id: int | None = None, kinds: Sequence[str] = KINDS,
                 **kwargs: Any) -> None:
        self.alternatives, left_out = alternatives(kinds)
        rodata = {"netns_ino": int(netns), "peer_addr": ipv4_raw(address) if address else 0,
                  "match_id": icmp_id is not None, "icmp_id": (icmp_id or 0) & 0xFFFF}
        super().__init__(os.path.join(HERE, "pingtrace.bpf.c"), rodata=rodata,
                         fallback=self.alternatives,
                         programs=lambda prog: prog.name not in left_out, **kwargs)
        self._ring = None

    def open_events(self, callback: Callable[[Any], Any]) -> None:
        """Deliver each decoded ``struct pt_event`` to ``callback``."""
        self._ring = self.maps["events"].open_ring_buffer(callback)

    def fileno(self) -> int:
        """An fd that is readable when events wait (for selectors)."""
        if self._ring is None:
            raise RuntimeError("call open_events() first")
        return self._ring.fileno()

    def consume(self) -> int:
        return self._ring.consume() if self._ring is not None else 0

    def set_sender(self, pid: int) -> None:
        """Time only this process's sendto() calls (0: any process)."""
        self.bss.send_tgid = int(pid)


# -- active mode --------------------------------------------------------------------

def run_active(args: argparse.Namespace, stop: loop.Stop) -> int:
    target = resolve_ipv4(args.target)
    ident = args.id if args.id is not None else os.getpid() & 0xFFFF
    tool = PingTrace(netns=0 if args.all_netns else own_netns(), address=target, icmp_id=ident)
    try:
        cli.report_fallbacks(tool, args.verbose)
        asm = tl.Assembler()
        tool.open_events(asm.add)
        peer = None
        if args.peer:
            peer = PeerClient(target, args.port, ident)
            if not peer.hello(timeout=args.peer_timeout):
                cli.info(f"pingtrace: no `pingtrace --server` answered on {target}:{args.port}; "
                         "showing this host's stages only")
                peer.close()
                peer = None
        prober = Prober(target, ident, args.count, args.interval, args.timeout, args.size)
        tool.set_sender(prober.pid)
        table = ActiveTable(target=target, ident=ident, json=args.json,
                            with_peer=peer is not None, spike_factor=args.spike_factor,
                            spike_min_us=args.spike_min_us)
        cli.info(f"PINGTRACE {target}: id {ident:#06x}, {args.size} data bytes"
                 + (f", peer stages from {target}:{args.port}" if peer else "")
                 + ". Hit Ctrl-C to end.")
        table.header()
        prober.go()
        try:
            _active_loop(tool, asm, prober, peer, table, target, ident, args, stop)
        finally:
            prober.stop()
        data = table.summary(dropped=tool.dropped,
                             peer_unmatched=len(peer.reports) if peer is not None else None)
        if peer is not None:
            peer.close()
    finally:
        tool.close()
    if data["sent"] and not data["received"]:
        # As ping(1): no reply at all is a failure a script can test.
        cli.info(f"pingtrace: no reply from {target}: {data['sent']} sent, 100% loss")
        return 1
    return 0


def _active_loop(tool: PingTrace, asm: tl.Assembler, prober: Prober, peer: PeerClient | None,
                 table: ActiveTable, target: str, ident: int, args: argparse.Namespace,
                 stop: loop.Stop) -> None:
    pending: list[Probe] = []
    sel = selectors.DefaultSelector()
    sel.register(tool.fileno(), selectors.EVENT_READ)
    sel.register(prober.fileno(), selectors.EVENT_READ)
    if peer is not None:
        sel.register(peer.fileno(), selectors.EVENT_READ)
    kernel_wait = 200_000_000                        # for the reply's last points
    peer_wait = int(args.peer_timeout * 1e9)         # for the peer's report
    stopping_at = None
    try:
        while True:
            sel.select(0.02)
            tool.consume()
            pending.extend(prober.read())
            if peer is not None:
                peer.receive()
            now = time.monotonic_ns()
            if stop and stopping_at is None:
                stopping_at = now                    # stop: finish what is in flight
                prober.stop()
            while pending:
                p = pending[0]
                rec = asm.get(tl.CLIENT, target, ident, p.seq)
                waited = now - p.arrived
                if not p.lost:
                    complete = rec is not None and asm.settled(rec, now, (tl.ECHO_REPLY, tl.RECV))
                    if not complete and waited < kernel_wait and stopping_at is None:
                        break
                    if (peer is not None and p.seq not in peer.reports and waited < peer_wait
                            and stopping_at is None):
                        break
                pending.pop(0)
                peer_rec = None
                if peer is not None and p.seq in peer.reports:
                    peer_rec = tl.Record.from_points(tl.SERVER, target, ident, p.seq,
                                                     peer.reports.pop(p.seq))
                table.row(p, rec, peer_rec)
                if rec is not None:
                    asm.pop(rec)
            if not pending and (prober.finished or stopping_at is not None):
                return
            # Records of probes that will never be printed (e.g. another pinger's) go away.
            for rec in list(asm.records.values()):
                if now - rec.last_ts > 10 * asm.timeout_ns:
                    asm.pop(rec)
    finally:
        sel.close()


def resolve_ipv4(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError as e:
        raise LccError(f"cannot resolve {host!r} to an IPv4 address: {e}") from None


# -- passive and server modes ---------------------------------------------------------

def _client_halves(rec: tl.Record) -> tuple[list[tl.Stage], list[tl.Stage]]:
    st = tl.stages(rec)
    i = next((k for k, s in enumerate(st) if s.name == "remote"), len(st))
    return st[:i], st[i:]


def run_watch(args: argparse.Namespace, stop: loop.Stop) -> int:
    """Passive (-a) and server (--server) modes: follow echoes, print as they complete."""
    address = resolve_ipv4(args.address) if args.address else None
    server = PeerServer(args.port) if args.server else None
    tool = PingTrace(netns=0 if args.all_netns else own_netns(), address=address)
    try:
        cli.report_fallbacks(tool, args.verbose)
        asm = tl.Assembler()
        tool.open_events(asm.add)
        printer = WatchPrinter(json=args.json)
        sel = selectors.DefaultSelector()
        sel.register(tool.fileno(), selectors.EVENT_READ)
        if server is not None:
            sel.register(server.fileno(), selectors.EVENT_READ)
            cli.info(f"pingtrace: server listening on udp port {server.port}. Hit Ctrl-C to end.")
            if args.json:
                cli.print_json({"type": "ready", "port": server.port, "netns": own_netns()})
        else:
            cli.info(f"Following ICMP echoes{' to and from ' + address if address else ''}. "
                     "Hit Ctrl-C to end.")
        printer.header()
        printed_send: set[tuple] = set()
        while not stop:
            rem = stop.remaining()
            wait = 0.01 if asm.records else 0.25
            sel.select(wait if rem is None else min(wait, rem))
            tool.consume()
            if server is not None:
                for remote, ident in server.handle():
                    cli.info(f"pingtrace: reporting to {remote} (ICMP id {ident:#06x})")
            _flush_watch(asm, printer, server, printed_send, time.monotonic_ns(), final=False)
        tool.consume()
        _flush_watch(asm, printer, server, printed_send, time.monotonic_ns(), final=True)
        sel.close()
        printer.summary(dropped=tool.dropped, reports=server.sent if server else None,
                        seconds=stop.elapsed())
    finally:
        tool.close()
        if server is not None:
            server.close()
    return 0


def _flush_watch(asm: tl.Assembler, printer: WatchPrinter, server: PeerServer | None,
                 printed_send: set, now: int, *, final: bool) -> None:
    for rec in sorted(asm.records.values(), key=lambda r: r.first_ts):
        if rec.role == tl.SERVER:
            if final or asm.settled(rec, now, (tl.ECHO_REPLY, tl.DEV_XMIT),
                                               (tl.ECHO_REPLY, tl.DEV_START)):
                reported = None
                if server is not None:
                    reported = server.report(rec.remote, rec.id, rec.seq, rec.to_points())
                printer.line("echo", rec, tl.stages(rec), rec.first_ts, tl.span_ns(rec),
                             reported)
                asm.pop(rec)
            continue
        if server is not None:      # a server prints only what it answers
            asm.pop(rec)
            continue
        send, recv = _client_halves(rec)
        has_request = any(t == tl.ECHO_REQUEST for t, _ in rec.points)
        has_reply = any(t == tl.ECHO_REPLY for t, _ in rec.points)
        # The send line once the request is out (its reply is in, or nothing came for a while).
        send_done = final or has_reply or now - rec.last_ts >= asm.settle_ns
        if has_request and send_done and rec.key not in printed_send:
            printed_send.add(rec.key)
            printer.line("send", rec, send, rec.first_ts)
        if final or asm.settled(rec, now, (tl.ECHO_REPLY, tl.RECV)):
            if has_reply:
                last = max(ts for tss in rec.points.values() for ts in tss)
                printer.line("recv", rec, recv, last, tl.span_ns(rec) if has_request else None)
            printed_send.discard(rec.key)
            asm.pop(rec)


# -- command line ----------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="pingtrace", description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("target", nargs="?", help="send echo requests to this host (active mode)")
    p.add_argument("-a", "--address", metavar="ADDR",
                   help="passive mode: follow echoes to and from ADDR")
    p.add_argument("--server", action="store_true",
                   help="peer mode: report this host's stages to probers that ask (--peer)")
    p.add_argument("-c", "--count", type=int, default=0,
                   help="stop after COUNT probes (default: until Ctrl-C or -d)")
    p.add_argument("-i", "--interval", type=cli.positive_float, default=1.0,
                   help="seconds between probes (default 1)")
    p.add_argument("-W", "--timeout", type=cli.positive_float, default=1.0,
                   help="seconds to wait for each reply (default 1)")
    p.add_argument("-s", "--size", type=int, default=56, help="payload bytes (default 56)")
    p.add_argument("--id", type=lambda s: int(s, 0), help="ICMP echo id (default: pid)")
    p.add_argument("-P", "--peer", action="store_true",
                   help="ask `pingtrace --server` on the target for its stages")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"UDP port of the side channel (default {DEFAULT_PORT})")
    p.add_argument("--peer-timeout", type=cli.positive_float, default=1.0,
                   help="seconds to wait for the server's hello and each report (default 1)")
    p.add_argument("--spike-factor", type=cli.positive_float, default=5.0,
                   help="a spike is RTT >= FACTOR x median (default 5) ...")
    p.add_argument("--spike-min-us", type=float, default=200.0,
                   help="... and at least this many us above it (default 200)")
    p.add_argument("--all-netns", action="store_true",
                   help="follow every network namespace, not only this process's")
    cli.add_common_args(p)
    args = p.parse_args(argv)
    modes = sum(bool(x) for x in (args.target, args.server)) + bool(args.address and
                                                                       not args.server)
    if modes != 1:
        p.error("give a TARGET (active), -a ADDR (passive) or --server")
    if args.size < 0 or args.size > 65000:
        p.error("--size must be between 0 and 65000")
    if args.peer and not args.target:
        p.error("--peer goes with a TARGET")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with loop.stopping(args.duration) as stop:
        if args.target:
            return run_active(args, stop)
        return run_watch(args, stop)


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
