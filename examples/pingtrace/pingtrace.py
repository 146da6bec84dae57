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
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)

import timeline as tl  # noqa: E402
from peer import DEFAULT_PORT, PeerClient, PeerServer  # noqa: E402

from lcc import ClbcBase, Fallback, LccError  # noqa: E402
from lcc.netfmt import ipv4_raw  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

# Each hook's programs, best first: tp_btf, raw_tp, then the classic tracepoint
# (or, for sk_data_ready, which only 6.6+ kernels have, a kprobe).
SKB_HOOKS = ("net_dev_queue", "net_dev_start_xmit", "net_dev_xmit", "netif_rx",
             "napi_gro_receive_entry", "netif_receive_skb", "fib_table_lookup",
             "sched_wakeup", "skb_copy_datagram_iovec")


KINDS = ("btf", "raw", "tp", "kp")   # tp_btf, raw_tp, tracepoint, kprobe


def alternatives(kinds: Sequence[str] = KINDS) -> list[Fallback]:
    """One Fallback per hook, keeping the program kinds in ``kinds`` where a hook has them."""
    hooks = [(f"btf_{h}", f"raw_{h}", f"tp_{h}") for h in SKB_HOOKS]
    hooks.append(("btf_sk_data_ready", "raw_sk_data_ready", "kp_sock_def_readable"))
    out = []
    for names in hooks:
        kept = [n for n in names if n.split("_", 1)[0] in kinds]
        out.append(Fallback(*(kept or names)))
    return out


def own_netns() -> int:
    """Inode of this process's network namespace (what the kernel calls net->ns.inum)."""
    return os.stat("/proc/self/ns/net").st_ino


class PingTrace(ClbcBase):
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
        self.alternatives = alternatives(kinds)
        rodata = {"netns_ino": int(netns), "peer_addr": ipv4_raw(address) if address else 0,
                  "match_id": icmp_id is not None, "icmp_id": (icmp_id or 0) & 0xFFFF}
        super().__init__(os.path.join(HERE, "pingtrace.bpf.c"), rodata=rodata,
                         fallback=self.alternatives, **kwargs)
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

    @property
    def dropped(self) -> int:
        """Events lost because the ring buffer was full."""
        return int(self.bss.dropped)


# -- formatting --------------------------------------------------------------------

def _us(ns: int | None, width: int = 8) -> str:
    return f"{'-':>{width}}" if ns is None else f"{ns / 1000:>{width}.1f}"


def _wall(mono_ns: int) -> str:
    wall = time.time() - time.monotonic() + mono_ns / 1e9
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1e6):06d}"


def _stage_text(st: list[tl.Stage]) -> str:
    return " ".join(f"{tl.column_label(s.host, s.name)} {_us(s.ns, 0)}" for s in st)


# -- active mode --------------------------------------------------------------------

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
        argv = [sys.executable, os.path.join(HERE, "prober.py"), target, str(ident), str(count),
                str(interval), str(timeout), str(size)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        line = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if line != "ready":
            self.proc.wait()
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


class ActiveTable:
    """Rows of stage times per probe, and the summary with its spikes."""

    def __init__(self, *, target: str, ident: int, json: bool, with_peer: bool,
                 spike_factor: float, spike_min_us: float) -> None:
        self.target, self.ident, self.json = target, ident, json
        self.cols = tl.columns(with_peer)
        self.spike_factor, self.spike_min_us = spike_factor, spike_min_us
        self.sent = 0
        self.rows: list[tuple[int, float, list[tl.Stage]]] = []   # (seq, rtt_us, stages)

    def header(self) -> None:
        if self.json:
            return
        labels = " ".join(f"{tl.column_label(h, n):>8}" for h, n in self.cols)
        print(f"{'SEQ':>5} {'RTT(us)':>9} {labels} {'app':>8}", flush=True)

    def _rtt_median(self) -> float | None:
        return tl.median(r for _, r, _ in self.rows)

    def row(self, probe: Probe, client: tl.Record | None, peer: tl.Record | None) -> None:
        self.sent += 1
        if probe.lost:
            if self.json:
                cli.print_json({"type": "probe", "target": self.target, "id": self.ident,
                                "seq": probe.seq, "lost": True})
            else:
                print(f"{probe.seq:>5} {'lost':>9}", flush=True)
            return
        stages = tl.combine(client, peer) if client else []
        span = tl.span_ns(client) if client else None
        user = probe.user_rtt_ns or 0
        # The prober's own time around its two syscalls completes the round trip.
        stages.append(tl.Stage("local", "app", None if span is None else user - span))
        rtt_us = user / 1000
        spike = tl.is_spike(rtt_us, self._rtt_median(), self.spike_factor, self.spike_min_us)
        self.rows.append((probe.seq, rtt_us, stages))
        if self.json:
            cli.print_json({
                "type": "probe", "target": self.target, "id": self.ident, "seq": probe.seq,
                "lost": False, "rtt_us": round(rtt_us, 3),
                "kernel_rtt_us": None if span is None else round(span / 1000, 3),
                "stages": [s.to_dict() for s in stages], "peer": peer is not None,
                "spike": spike, "points": client.offsets_us() if client else {},
                "peer_points": peer.offsets_us() if peer else None})
            return
        by_col = {(s.host, s.name): s.ns for s in stages}
        if peer is None and ("local", "wire") in self.cols:
            by_col[("local", "wire")] = by_col.get(("local", "remote"))
        cells = " ".join(_us(by_col.get(c)) for c in self.cols + [("local", "app")])
        mark = "  <- spike" if spike else ""
        print(f"{probe.seq:>5} {rtt_us:>9.1f} {cells}{mark}", flush=True)

    def summary(self, *, dropped: int, peer_reports: int | None) -> None:
        rtts = [r for _, r, _ in self.rows]
        med = tl.median(rtts)
        medians = tl.stage_medians(st for _, _, st in self.rows)
        spikes = []
        for seq, rtt, st in self.rows:
            if tl.is_spike(rtt, med, self.spike_factor, self.spike_min_us):
                culprit = tl.blame(st, medians)
                spikes.append({"seq": seq, "rtt_us": round(rtt, 3),
                               "stage": tl.column_label(culprit.host, culprit.name)
                               if culprit else None,
                               "stage_us": round(culprit.ns / 1000, 3)
                               if culprit and culprit.ns is not None else None})
        received = len(rtts)
        data = {"type": "summary", "target": self.target, "id": self.ident, "sent": self.sent,
                "received": received,
                "loss_pct": round(100 * (self.sent - received) / self.sent, 1) if self.sent else 0,
                "rtt_us": {"min": min(rtts) if rtts else None,
                           "median": med,
                           "avg": round(sum(rtts) / len(rtts), 3) if rtts else None,
                           "max": max(rtts) if rtts else None},
                "stage_median_us": {tl.column_label(h, n): round(v, 3)
                                    for (h, n), v in medians.items()},
                "spike_rule": {"factor": self.spike_factor, "min_excess_us": self.spike_min_us},
                "spikes": spikes, "dropped_events": dropped, "peer_reports": peer_reports}
        if self.json:
            cli.print_json(data)
            return
        print(f"\n--- {self.target} pingtrace: {self.sent} sent, {received} received, "
              f"{data['loss_pct']}% loss", flush=True)
        if rtts:
            print(f"rtt min/median/avg/max = {min(rtts):.1f}/{med:.1f}/"
                  f"{data['rtt_us']['avg']:.1f}/{max(rtts):.1f} us")
            order = [tl.column_label(h, n) for h, n in self.cols] + ["app"]
            meds = data["stage_median_us"]
            print("stage medians (us): " + ", ".join(
                f"{k} {meds[k]:.1f}" for k in order + sorted(set(meds) - set(order))
                if k in meds))
        rule = f"> {self.spike_factor:g}x median and +{self.spike_min_us:g} us"
        if spikes:
            print(f"spikes ({rule}):")
            for s in spikes:
                where = f", mostly {s['stage']} {s['stage_us']:.1f} us" if s["stage"] else ""
                print(f"  seq {s['seq']}: {s['rtt_us']:.1f} us{where}")
        else:
            print(f"no spikes ({rule})")
        if dropped:
            print(f"{dropped} events lost (ring buffer full)")
        sys.stdout.flush()


def run_active(args: argparse.Namespace, session: cli.Session) -> int:
    target = resolve_ipv4(args.target)
    ident = args.id if args.id is not None else os.getpid() & 0xFFFF
    tool = PingTrace(netns=0 if args.all_netns else own_netns(), address=target, icmp_id=ident)
    try:
        if args.verbose:
            for line in cli.fallback_report(tool):
                cli.info(line)
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
            _active_loop(tool, asm, prober, peer, table, target, ident, args, session)
        finally:
            prober.stop()
        table.summary(dropped=tool.dropped,
                      peer_reports=len(peer.reports) if peer is not None else None)
        if peer is not None:
            peer.close()
    finally:
        tool.close()
    return 0


def _active_loop(tool: PingTrace, asm: tl.Assembler, prober: Prober, peer: PeerClient | None,
                 table: ActiveTable, target: str, ident: int, args: argparse.Namespace,
                 session: cli.Session) -> None:
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
            if session.done and stopping_at is None:
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

class WatchPrinter:
    """One line per send and per receive (client role), one per echo answered (server)."""

    def __init__(self, *, json: bool) -> None:
        self.json = json
        self.counts = {"send": 0, "recv": 0, "echo": 0}
        self.rtts: list[float] = []

    def header(self) -> None:
        if not self.json:
            print(f"{'TIME':<15} {'EVENT':<5} {'PEER':<15} {'ID':>6} {'SEQ':>5} {'RTT(us)':>9}  "
                  f"STAGES(us)", flush=True)

    def line(self, kind: str, rec: tl.Record, stages: list[tl.Stage], when: int,
             rtt_ns: int | None = None, reported: bool | None = None) -> None:
        self.counts[kind] += 1
        if rtt_ns is not None:
            self.rtts.append(rtt_ns / 1000)
        if self.json:
            obj = {"type": kind, "time": _wall(when), "ts_ns": when, "peer": rec.remote,
                   "id": rec.id, "seq": rec.seq,
                   "rtt_us": None if rtt_ns is None else round(rtt_ns / 1000, 3),
                   "stages": [s.to_dict() for s in stages]}
            if reported is not None:
                obj["reported"] = reported
            cli.print_json(obj)
            return
        rtt = _us(rtt_ns, 9)
        print(f"{_wall(when):<15} {kind:<5} {rec.remote:<15} {rec.id:>6} {rec.seq:>5} {rtt}  "
              f"{_stage_text(stages)}", flush=True)

    def summary(self, *, dropped: int, reports: int | None, seconds: float) -> None:
        data = {"type": "summary", "seconds": round(seconds, 3), **self.counts,
                "rtt_us_median": tl.median(self.rtts), "dropped_events": dropped}
        if reports is not None:
            data["reports_sent"] = reports
        if self.json:
            cli.print_json(data)
            return
        text = (f"\n{self.counts['send']} sent, {self.counts['recv']} received, "
                f"{self.counts['echo']} answered in {seconds:.1f}s")
        if self.rtts:
            text += f"; rtt median {data['rtt_us_median']:.1f} us"
        if reports is not None:
            text += f"; {reports} reports sent to probers"
        if dropped:
            text += f"; {dropped} events lost (ring buffer full)"
        print(text, flush=True)


def _client_halves(rec: tl.Record) -> tuple[list[tl.Stage], list[tl.Stage]]:
    st = tl.stages(rec)
    i = next((k for k, s in enumerate(st) if s.name == "remote"), len(st))
    return st[:i], st[i:]


def run_watch(args: argparse.Namespace, session: cli.Session) -> int:
    """Passive (-a) and server (--server) modes: follow echoes, print as they complete."""
    address = resolve_ipv4(args.address) if args.address else None
    server = PeerServer(args.port) if args.server else None
    tool = PingTrace(netns=0 if args.all_netns else own_netns(), address=address)
    try:
        if args.verbose:
            for line in cli.fallback_report(tool):
                cli.info(line)
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
        while not session.done:
            rem = session.remaining()
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
                        seconds=session.elapsed())
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
        has_reply = any(t == tl.ECHO_REPLY for t, _ in rec.points)
        if rec.key not in printed_send and (final or has_reply or now - rec.last_ts
                                            >= asm.settle_ns) and \
                any(t == tl.ECHO_REQUEST for t, _ in rec.points):
            printed_send.add(rec.key)
            printer.line("send", rec, send, rec.first_ts)
        if final or asm.settled(rec, now, (tl.ECHO_REPLY, tl.RECV)):
            if has_reply:
                span = tl.span_ns(rec) if any(t == tl.ECHO_REQUEST for t, _ in rec.points) \
                    else None
                last = max(ts for tss in rec.points.values() for ts in tss)
                printer.line("recv", rec, recv, last, span)
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
    with cli.Session(args.duration) as session:
        if args.target:
            return run_active(args, session)
        return run_watch(args, session)


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
