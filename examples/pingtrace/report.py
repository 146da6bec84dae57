"""pingtrace's output: the active-mode table and summary, and the passive/server lines.

Text for people, or one JSON object per line with ``--json``.  Times are
microseconds; ``-`` marks a stage whose end point was not seen.
"""

from __future__ import annotations

import sys
import time

import timeline as tl
from _common import cli
from prober import Probe


def fmt_us(ns: int | None, width: int = 8) -> str:
    """Nanoseconds as microseconds with one decimal, right-aligned; '-' for None."""
    return f"{'-':>{width}}" if ns is None else f"{ns / 1000:>{width}.1f}"


def fmt_wall(mono_ns: int) -> str:
    """A CLOCK_MONOTONIC time (bpf_ktime_get_ns) as wall-clock HH:MM:SS.uuuuuu."""
    wall = time.time() - time.monotonic() + mono_ns / 1e9
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1e6):06d}"


def stage_text(st: list[tl.Stage]) -> str:
    return " ".join(f"{tl.column_label(s.host, s.name)} {fmt_us(s.ns, 0)}" for s in st)


class ActiveTable:
    """Rows of stage times per probe, and the summary with its spikes."""

    def __init__(self, *, target: str, ident: int, json: bool, with_peer: bool,
                 spike_factor: float, spike_min_us: float) -> None:
        self.target, self.ident, self.json = target, ident, json
        self.cols = tl.columns(with_peer)
        self.spike_factor, self.spike_min_us = spike_factor, spike_min_us
        self.sent = 0
        self.rows: list[tuple[int, float, list[tl.Stage]]] = []   # (seq, rtt_us, stages)
        self.with_peer_stages = 0  # probes whose row has the peer's stages

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
        if peer is not None:
            self.with_peer_stages += 1
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
        cells = " ".join(fmt_us(by_col.get(c)) for c in self.cols + [("local", "app")])
        mark = "  <- spike" if spike else ""
        print(f"{probe.seq:>5} {rtt_us:>9.1f} {cells}{mark}", flush=True)

    def summary(self, *, dropped: int, peer_unmatched: int | None) -> dict:
        """Print the summary and return it (the JSON object).

        ``peer_unmatched``: peer reports no probe used (None without a peer);
        ``peer_reports`` in the output is the number of probes shown with the
        peer's stages.
        """
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
                "spikes": spikes, "dropped_events": dropped,
                "peer_reports": self.with_peer_stages if peer_unmatched is not None else None,
                "peer_reports_unmatched": peer_unmatched}
        if self.json:
            cli.print_json(data)
            return data
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
        if peer_unmatched is not None:
            print(f"peer stages for {self.with_peer_stages} of {received} replies"
                  + (f" ({peer_unmatched} reports matched no probe)" if peer_unmatched else ""))
        if dropped:
            print(f"{dropped} events lost (ring buffer full)")
        sys.stdout.flush()
        return data


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
            obj = {"type": kind, "time": fmt_wall(when), "ts_ns": when, "peer": rec.remote,
                   "id": rec.id, "seq": rec.seq,
                   "rtt_us": None if rtt_ns is None else round(rtt_ns / 1000, 3),
                   "stages": [s.to_dict() for s in stages]}
            if reported is not None:
                obj["reported"] = reported
            cli.print_json(obj)
            return
        rtt = fmt_us(rtt_ns, 9)
        print(f"{fmt_wall(when):<15} {kind:<5} {rec.remote:<15} {rec.id:>6} {rec.seq:>5} {rtt}  "
              f"{stage_text(stages)}", flush=True)

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
