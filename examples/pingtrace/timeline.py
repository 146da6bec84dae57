"""From pingtrace's per-stage timestamps to the stage times of each echo.

Nothing here touches the kernel: :class:`Assembler` is fed decoded
``struct pt_event`` values (or anything with the same fields), groups them
into one :class:`Record` per echo and per role, and :func:`stages` walks a
record along its role's chain of points.

Roles: on the host that sent the echo request (the *client*), the chain runs
from ``sendto()`` to the return of ``recvfrom()``; on the host that answered
(the *server*), from the request's arrival at a device to the reply's
departure.  A stage is the time between two consecutive points of a chain
that were both seen; when a point is missing its stage is ``None`` and the
next stage covers the gap, so the stages of a record always add up to the
time between its first and last point.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from lcc.netfmt import fmt_ipv4

# enum pt_point (pingtrace.h)
SEND, DEV_QUEUE, DEV_START, DEV_XMIT, NETIF_RX, GRO, RECEIVE_SKB = 1, 2, 3, 4, 5, 6, 7
ROUTE_IN, ROUTE_OUT, SOCK, WAKE, COPY, RECV = 8, 9, 10, 11, 12, 13
# A pseudo point: the first device-level receive (netif_rx, GRO or netif_receive_skb).
RX_DEV = 100

POINT_NAMES = {SEND: "send", DEV_QUEUE: "dev_queue", DEV_START: "dev_start_xmit",
               DEV_XMIT: "dev_xmit", NETIF_RX: "netif_rx", GRO: "gro_receive",
               RECEIVE_SKB: "netif_receive_skb", ROUTE_IN: "route_in", ROUTE_OUT: "route_out",
               SOCK: "sock_queued", WAKE: "wakeup", COPY: "copy", RECV: "recv_return",
               RX_DEV: "rx_dev"}
# Points seen while a packet leaves this host (the others: while it arrives).
TX_POINTS = frozenset({SEND, DEV_QUEUE, DEV_START, DEV_XMIT, ROUTE_OUT})
RX_DEV_POINTS = (NETIF_RX, GRO, RECEIVE_SKB)

ECHO_REQUEST, ECHO_REPLY = 8, 0
CLIENT, SERVER = "client", "server"

# (stage name, (ICMP type, point) that ends it).  The first entry is the start point.
CLIENT_CHAIN: tuple[tuple[str, tuple[int, int]], ...] = (
    ("start", (ECHO_REQUEST, SEND)),
    ("send", (ECHO_REQUEST, DEV_QUEUE)),       # sendto(): ICMP, routing, IP output
    ("qdisc", (ECHO_REQUEST, DEV_START)),      # device queue until the driver takes it
    ("remote", (ECHO_REPLY, RX_DEV)),          # the wire both ways and the peer
    ("devrx", (ECHO_REPLY, RECEIVE_SKB)),      # driver/backlog until the stack takes it
    ("iprx", (ECHO_REPLY, ROUTE_IN)),          # IP receive up to the input route
    ("deliver", (ECHO_REPLY, SOCK)),           # local delivery to the ICMP socket
    ("wakeup", (ECHO_REPLY, WAKE)),            # the reader is woken
    ("sched", (ECHO_REPLY, COPY)),             # ...and runs again to copy the reply
    ("recv", (ECHO_REPLY, RECV)),              # copy out and return to user space
)
SERVER_CHAIN: tuple[tuple[str, tuple[int, int]], ...] = (
    ("start", (ECHO_REQUEST, RX_DEV)),
    ("devrx", (ECHO_REQUEST, RECEIVE_SKB)),
    ("iprx", (ECHO_REQUEST, ROUTE_IN)),
    ("icmp", (ECHO_REPLY, ROUTE_OUT)),         # ICMP echo handling until the reply is routed
    ("iptx", (ECHO_REPLY, DEV_QUEUE)),         # reply IP output
    ("qdisc", (ECHO_REPLY, DEV_START)),
)
CHAINS = {CLIENT: CLIENT_CHAIN, SERVER: SERVER_CHAIN}

STAGE_HELP = {
    "send": "sendto() entry to the device layer: ICMP, routing, IP output",
    "qdisc": "device queue (qdisc) until the driver starts transmitting",
    "remote": "driver transmit to the reply's arrival at a device: wire and peer",
    "wire": "'remote' minus the peer's stages: the wire, both directions",
    "devrx": "driver receive (netif_rx/GRO) until netif_receive_skb",
    "iprx": "netif_receive_skb until the input route lookup: IP receive",
    "deliver": "input route until the reply is queued on the ICMP socket",
    "icmp": "input route until the echo reply's route lookup: ICMP echo handling",
    "iptx": "the reply's route lookup until the device layer: IP output",
    "wakeup": "queued on the socket until the reader is woken",
    "sched": "woken until the reader copies the reply (run delay)",
    "recv": "copy until recvfrom()/recvmsg() returns",
}


def role_of(icmp_type: int, point: int) -> str:
    """CLIENT for a request leaving or a reply arriving, SERVER for the converse."""
    leaving = point in TX_POINTS
    return CLIENT if (icmp_type == ECHO_REQUEST) == leaving else SERVER


class Stage(NamedTuple):
    host: str           # "local" or "peer"
    name: str
    ns: int | None      # None: a point was missing; the next stage covers the gap

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "name": self.name,
                "us": None if self.ns is None else round(self.ns / 1000, 3)}


@dataclass
class Record:
    """Everything seen of one echo (request and reply) in one role."""

    role: str
    remote: str                 # the other host's address
    id: int
    seq: int
    points: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    ifindex: int = 0
    first_ts: int = 0
    last_ts: int = 0

    @property
    def key(self) -> tuple[str, str, int, int]:
        return (self.role, self.remote, self.id, self.seq)

    def add(self, icmp_type: int, point: int, ts: int, ifindex: int = 0) -> None:
        self.points.setdefault((icmp_type, point), []).append(ts)
        if ifindex and point in (DEV_QUEUE, DEV_START, NETIF_RX, RECEIVE_SKB):
            self.ifindex = ifindex
        self.first_ts = ts if not self.first_ts else min(self.first_ts, ts)
        self.last_ts = max(self.last_ts, ts)

    def has(self, icmp_type: int, point: int) -> bool:
        return (icmp_type, point) in self.points

    def times(self, icmp_type: int, point: int) -> list[int]:
        if point == RX_DEV:
            return sorted(t for p in RX_DEV_POINTS for t in self.points.get((icmp_type, p), ()))
        return sorted(self.points.get((icmp_type, point), ()))

    def to_points(self) -> list[list[int]]:
        """[[type, point, ts], ...]: what the peer side channel carries."""
        return [[t, p, ts] for (t, p), tss in self.points.items() for ts in tss]

    @classmethod
    def from_points(cls, role: str, remote: str, id: int, seq: int,
                    points: Iterable[Iterable[int]]) -> Record:
        r = cls(role, remote, id, seq)
        for t, p, ts in points:
            r.add(int(t), int(p), int(ts))
        return r

    def offsets_us(self) -> dict[str, float]:
        """Each point's first time after the record's first point, in us (for JSON)."""
        out = {}
        for (t, p), tss in sorted(self.points.items(), key=lambda kv: min(kv[1])):
            name = f"{'request' if t == ECHO_REQUEST else 'reply'}.{POINT_NAMES.get(p, p)}"
            out[name] = round((min(tss) - self.first_ts) / 1000, 3)
        return out


def walk(record: Record, chain=None) -> tuple[list[Stage], int | None, int | None]:
    """The stages of ``record`` along its role's chain, and the chain's first and last time.

    Each point's time is the earliest one not before the previous point's
    (a stale wake-up from before the reply arrived does not count).
    """
    chain = chain or CHAINS[record.role]
    host = "local"
    out: list[Stage] = []
    first = last = None
    for i, (name, (t, p)) in enumerate(chain):
        ts = next((x for x in record.times(t, p) if last is None or x >= last), None)
        if i == 0:
            first = last = ts
            continue
        if ts is None:
            out.append(Stage(host, name, None))
            continue
        if last is None:
            first = ts
            out.append(Stage(host, name, None))
        else:
            out.append(Stage(host, name, ts - last))
        last = ts
    return out, first, last


def stages(record: Record) -> list[Stage]:
    return walk(record)[0]


def span_ns(record: Record) -> int | None:
    """Time from the record's first chain point to its last (None: fewer than two)."""
    _, first, last = walk(record)
    return None if first is None or last is None or first == last else last - first


def combine(client: Record, peer: Record | None) -> list[Stage]:
    """The client's stages with 'remote' split into the wire and the peer's stages.

    Needs only time differences from the peer, so its clock may differ.  When
    the peer's stages do not fit inside 'remote' (they always do when both
    were measured), 'remote' is kept whole.
    """
    local = stages(client)
    if peer is None:
        return local
    peer_stages, pfirst, plast = walk(peer, SERVER_CHAIN)
    if pfirst is None or plast is None:
        return local
    out: list[Stage] = []
    for st in local:
        if st.name != "remote" or st.ns is None or plast - pfirst > st.ns:
            out.append(st)
            continue
        out.append(Stage("local", "wire", st.ns - (plast - pfirst)))
        out.extend(Stage("peer", s.name, s.ns) for s in peer_stages)
    return out


def columns(with_peer: bool) -> list[tuple[str, str]]:
    """(host, stage) columns of the active-mode table."""
    names = [n for n, _ in CLIENT_CHAIN[1:]]
    if not with_peer:
        return [("local", n) for n in names]
    cols: list[tuple[str, str]] = []
    for n in names:
        if n == "remote":
            cols.append(("local", "wire"))
            cols.extend(("peer", pn) for pn, _ in SERVER_CHAIN[1:])
        else:
            cols.append(("local", n))
    return cols


def column_label(host: str, name: str) -> str:
    return f"p.{name}" if host == "peer" else name


class Assembler:
    """Groups events into records; says which records (or halves) are ready.

    ``settle_ns``: how long after its last point a record waits for stragglers
    from other CPUs; ``timeout_ns``: when an incomplete record is given up.
    """

    def __init__(self, *, settle_ns: int = 3_000_000, timeout_ns: int = 1_000_000_000) -> None:
        self.records: dict[tuple[str, str, int, int], Record] = {}
        self.settle_ns = settle_ns
        self.timeout_ns = timeout_ns
        self.events = 0

    def add(self, ev: Any) -> Record:
        """Take one event (fields of struct pt_event); returns its record."""
        self.events += 1
        role = role_of(ev.type, ev.point)
        leaving = ev.point in TX_POINTS
        remote = fmt_ipv4(ev.daddr if leaving else ev.saddr)
        key = (role, remote, ev.id, ev.seq)
        rec = self.records.get(key)
        if rec is None:
            rec = self.records[key] = Record(role, remote, ev.id, ev.seq)
        rec.add(ev.type, ev.point, ev.ts, ev.ifindex)
        return rec

    def get(self, role: str, remote: str, id: int, seq: int) -> Record | None:
        return self.records.get((role, remote, id, seq))

    def pop(self, record: Record) -> None:
        self.records.pop(record.key, None)

    def settled(self, record: Record, now_ns: int, *ends: tuple[int, int]) -> bool:
        """Whether one of ``ends`` was seen and nothing came for settle_ns, or it timed out."""
        quiet = now_ns - record.last_ts
        if quiet >= self.timeout_ns:
            return True
        return quiet >= self.settle_ns and any(record.has(*e) for e in ends)


# -- summaries --------------------------------------------------------------------

def median(values: Iterable[float]) -> float | None:
    vals = list(values)
    return statistics.median(vals) if vals else None


def is_spike(rtt_us: float, median_us: float | None, factor: float, min_excess_us: float) -> bool:
    """Far above the median: ``factor`` times it and at least ``min_excess_us`` more."""
    if median_us is None:
        return False
    return rtt_us >= factor * median_us and rtt_us - median_us >= min_excess_us


def stage_medians(rows: Iterable[list[Stage]]) -> dict[tuple[str, str], float]:
    """Median of each (host, stage) over the rows where it was measured, in us."""
    acc: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        for st in row:
            if st.ns is not None:
                acc.setdefault((st.host, st.name), []).append(st.ns / 1000)
    return {k: statistics.median(v) for k, v in acc.items()}


def blame(row: list[Stage], medians: dict[tuple[str, str], float]) -> Stage | None:
    """The stage that grew most above its usual (median) time in this row."""
    best, excess = None, None
    for st in row:
        if st.ns is None:
            continue
        x = st.ns / 1000 - medians.get((st.host, st.name), 0.0)
        if excess is None or x > excess:
            best, excess = st, x
    return best
