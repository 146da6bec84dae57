#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""syslat: per-syscall latency histograms for a process, a thread or a command.

    syslat -p 1234                 # every syscall of process 1234, until it exits or Ctrl-C
    syslat -p 1234 read write      # only read and write
    syslat -c nginx -d 10 --hist   # processes named nginx, 10 s, BCC-style histograms
    syslat -p 1234 --json          # one JSON object per syscall
    syslat -T 10 -d 5              # syscount-style: top 10 syscalls in one compact table
    syslat -x -T 10 -p 1234        # failed calls only, with their errnos

At exit (duration over, Ctrl-C, SIGTERM, or the traced process exiting) it
prints, for each syscall, a ``MIN -> MAX : PCT% TOTAL`` table of its latency
and the average, busiest syscall first, with the estimated p50/p90/p99 and
the calls that failed, by errno.  ``-T N`` prints one compact table of the N
most called syscalls instead (like syscount); ``-x`` counts failed calls only.
``-i SECONDS`` prints and clears every interval instead.

Percentiles are estimated from the log2 histogram: the bucket that holds the
rank is found, and the value is interpolated linearly inside it (as if its
calls were spread evenly from its low to its high bound), then capped at the
measured maximum.  The true value lies in the same bucket, so the estimate is
off by less than a factor of two, and usually by much less.

As a library::

    with SysLat(pid=1234, syscalls=["read"]) as tool:
        ...
        for s in tool.results():
            print(s.name, s.count, s.hist)
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import sys
import time
from collections import namedtuple
from types import MappingProxyType

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import Any, Iterable, Sequence

    from lcc.hist import Log2Hist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from lcc import ClbcBase, LccError, loop  # noqa: E402
from lcc.syscalls import syscall_table  # noqa: E402

MAX_SYSCALLS = 512  # SYSLAT_MAX_SYSCALLS in syslat.h
UNITS = {"ns": 1, "us": 1000, "ms": 1000_000}
UNIT_LABELS = {"ns": "nsecs", "us": "usecs", "ms": "msecs"}


PERCENTILES = (50, 90, 99)


def estimate_percentile(hist: Log2Hist, pct: float, max_value: float | None = None) -> float | None:
    """The ``pct`` percentile (0-100) of the values in ``hist``, estimated (None if empty).

    The bucket holding rank ``pct/100 * total`` is found; within it the
    value is interpolated linearly between the bucket's low bound and its
    high bound + 1, as if its values were spread evenly; the result is capped
    at ``max_value`` (the measured maximum, in the histogram's unit) if given.
    """
    total = hist.total
    if not total:
        return None
    rank = pct / 100.0 * total
    seen = 0
    for b in hist.buckets:
        if not b.count:
            continue
        if seen + b.count >= rank:
            est = b.low + (rank - seen) / b.count * (b.high + 1 - b.low)
            return min(est, max_value) if max_value is not None else est
        seen += b.count
    return float(hist.buckets[-1].high) if max_value is None else float(max_value)


class SyscallLatency(namedtuple("SyscallLatency", (
        "nr",        # int
        "name",      # str
        "count",     # int
        "total_ns",  # int
        "max_ns",    # int
        "hist",      # lcc.hist.Log2Hist, in ``unit``
        "unit",      # str
        "errors",    # int: calls that returned an error (0 by default)
        "errnos",    # Mapping[str, int]: errno name -> calls, most first (empty by default)
        ), defaults=(0, MappingProxyType({})))):
    """What syslat measured for one syscall: counts, times (ns) and the log2 histogram.

    A ``collections.namedtuple`` rather than a dataclass or a
    ``typing.NamedTuple``: importing ``dataclasses`` (with ``inspect``) costs
    about 10 ms of every start, ``typing`` about 3 ms (:mod:`lcc.hist`, which
    imports it, is imported only once results are read).
    """

    __slots__ = ()

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def percentile(self, pct: float) -> float | None:
        """Estimated ``pct`` percentile in ``unit`` (see :func:`estimate_percentile`)."""
        return estimate_percentile(self.hist, pct, self.max_ns / UNITS[self.unit])

    def percentiles(self) -> dict[str, float | None]:
        """``{"p50": .., "p90": .., "p99": ..}`` in ``unit``, estimated."""
        out = {}
        for p in PERCENTILES:
            v = self.percentile(p)
            out[f"p{p}"] = None if v is None else round(v, 3)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"syscall": self.name, "nr": self.nr, "count": self.count,
                "total_ns": self.total_ns, "avg_ns": round(self.avg_ns, 1),
                "max_ns": self.max_ns, "unit": self.unit, "hist": self.hist.to_dict(),
                "percentiles": self.percentiles(), "percentiles_estimated": True,
                "errors": self.errors, "errnos": dict(self.errnos)}

    def errors_text(self) -> str:
        """``3 errors (EBADF 2, ENOENT 1)``, or ``""`` with none."""
        if not self.errors:
            return ""
        detail = ", ".join(f"{k} {v}" for k, v in self.errnos.items())
        return f"{self.errors} error{'s' if self.errors != 1 else ''} ({detail})"

    def render(self, star_hist: bool = False) -> str:
        """The syscall's summary table (or BCC-style star histogram) with its header."""
        div = UNITS[self.unit]
        label = UNIT_LABELS[self.unit]
        head = (f"{self.name} ({self.nr}): {self.count} calls, "
                f"total {self.total_ns / div:.2f} {label}, max {self.max_ns / div:.2f} {label}")
        if star_hist:
            body = self.hist.render(label) + f"\naverage: {self.avg_ns / div:.2f} {label}"
        else:
            from lcc.hist import render_summary
            body = render_summary(self.hist, self.total_ns / div, label)
        pct = ", ".join(f"{k} {_num(v)}" for k, v in self.percentiles().items())
        tail = f"\npercentiles (estimated from the histogram): {pct} {label}"
        if self.errors:
            tail += f"\nfailed: {self.errors_text()}"
        return f"{head}\n{body}{tail}"


class SysLat(ClbcBase):
    """Syscall latency of one process (``pid``), thread (``tid``) or command (``comm``).

    ``syscalls``: names to trace (default: all).  ``unit``: histogram unit,
    ``ns``/``us``/``ms``.  ``failed_only``: count only calls that returned an
    error.  With no pid or tid filter, every process but this one is traced.
    Raises UnknownSyscall for a name this architecture lacks; needs root.
    """

    def __init__(self, pid: int | None = None, tid: int | None = None,
                 comm: str | None = None, syscalls: Iterable[str] = (),
                 unit: str = "us", failed_only: bool = False, **kw: Any) -> None:
        if unit not in UNITS:
            raise LccError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
        self.table = syscall_table()
        self.unit = unit
        names = list(syscalls)
        traced = [0] * MAX_SYSCALLS
        for nr in self.table.numbers(names):
            if nr >= MAX_SYSCALLS:
                raise LccError(f"syscall number {nr} is beyond syslat's table ({MAX_SYSCALLS})")
            traced[nr] = 1
        rodata: dict[str, Any] = {
            "targ_tgid": pid or 0, "targ_tid": tid or 0,
            # The tracer leaves itself out, unless it was asked for by pid or tid.
            "self_tgid": 0 if (pid or tid) else os.getpid(),
            "unit_ns": UNITS[unit], "filter_syscalls": bool(names), "traced": traced,
            "failed_only": bool(failed_only),
        }
        if comm:
            rodata.update(filter_comm=True, targ_comm=comm[:15])
        super().__init__("syslat", rodata=rodata, **kw)

    def results(self, clear: bool = False) -> list[SyscallLatency]:
        """Every syscall seen so far, the most total time first; ``clear`` starts afresh."""
        hists_map, stats_map = self.maps["hists"], self.maps["stats"]
        errnos_map = self.maps["errnos"]
        slots = [(k.nr, k.slot, v) for k, v in hists_map.items()]
        stats = dict(stats_map.items())
        errs: dict[int, dict[str, int]] = {}
        for k, v in sorted(errnos_map.items(), key=lambda kv: (-kv[1], kv[0].err)):
            errs.setdefault(k.nr, {})[errno.errorcode.get(k.err, f"E{k.err}")] = v
        if clear:
            hists_map.clear()
            stats_map.clear()
            errnos_map.clear()
        from lcc.hist import Log2Hist  # (not at start: it imports typing)
        hists = Log2Hist.grouped(slots)
        out = []
        for nr, st in stats.items():
            out.append(SyscallLatency(nr, self.table.name(nr), st.count, st.total_ns,
                                      st.max_ns, hists.get(nr, Log2Hist()), self.unit,
                                      st.errors, errs.get(nr, {})))
        out.sort(key=lambda s: (-s.total_ns, s.nr))
        return out


class ProcessExit:
    """Readable once process ``pid`` has exited (a pidfd); raises LccError if there is none."""

    def __init__(self, pid: int) -> None:
        try:
            self.fd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise LccError(f"no process with pid {pid}") from None

    def wait(self, timeout: float) -> bool:
        """True if the process has exited (waits up to ``timeout`` seconds)."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        os.close(self.fd)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def top_table(results: list[SyscallLatency], n: int) -> str:
    """syscount's compact table: the ``n`` most called syscalls, one line each."""
    rows = sorted(results, key=lambda r: (-r.count, r.nr))[:n]
    unit = results[0].unit if results else "us"
    div = UNITS[unit]
    lines = [f"{'SYSCALL':<20} {'COUNT':>9} {'ERRORS':>7} {'TOTAL(' + unit + ')':>12} "
             f"{'AVG':>9} {'P50~':>9} {'P90~':>9} {'P99~':>9} {'MAX':>9}  ERRNOS"]
    for r in rows:
        p = r.percentiles()
        errs = ",".join(f"{k}:{v}" for k, v in r.errnos.items()) or "-"
        lines.append(f"{r.name:<20} {r.count:>9} {r.errors:>7} {r.total_ns / div:>12.2f} "
                     f"{_num(r.avg_ns / div):>9} {_num(p['p50']):>9} {_num(p['p90']):>9} "
                     f"{_num(p['p99']):>9} {_num(r.max_ns / div):>9}  {errs}")
    return "\n".join(lines)


def _print(results: list[SyscallLatency], args: argparse.Namespace) -> None:
    out = sys.stdout
    stamp = time.strftime("%H:%M:%S")
    if args.top:
        results = sorted(results, key=lambda r: (-r.count, r.nr))[:args.top]
    if args.json:
        for r in results:
            rec = r.to_dict()
            if args.interval:
                rec["time"] = stamp
            cli.print_json(rec)
        return
    if args.interval:
        out.write(f"\n{stamp}\n")
    if not results:
        out.write("no syscalls seen\n")
    elif args.top:
        out.write(top_table(results, args.top) + "\n"
                  "(P50~ P90~ P99~: estimated from the log2 histogram)\n")
    else:
        for r in results:
            out.write(r.render(args.hist) + "\n\n")
    out.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        formatter_class=cli.formatter(), prog="syslat", description="Per-syscall latency histograms of a process, thread or "
        "command, printed at exit (or every interval).",
        epilog="examples: syslat -p 1234 | syslat -p 1234 read write | syslat -c nginx --hist")
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=int, help="trace this process (stop when it exits)")
    who.add_argument("-t", "--tid", type=int, help="trace this thread")
    p.add_argument("-c", "--comm", help="trace tasks with this command name")
    p.add_argument("syscalls", nargs="*", metavar="SYSCALL",
                   help="trace only these syscalls (default: all)")
    p.add_argument("-u", "--unit", choices=list(UNITS), default="us",
                   help="histogram unit (default: us)")
    p.add_argument("--hist", action="store_true", help="BCC-style star histograms")
    p.add_argument("-i", "--interval", type=cli.positive_float, metavar="SECONDS",
                   help="print and clear every interval")
    p.add_argument("-T", "--top", type=int, metavar="N",
                   help="one compact table of the N most called syscalls (count, errors, "
                        "total, average, estimated p50/p90/p99, max, errnos), like syscount")
    p.add_argument("-x", "--failures", action="store_true",
                   help="count only calls that failed (returned -errno)")
    cli.add_common_args(p)
    args = p.parse_args(argv)
    if args.top is not None and args.top < 1:
        p.error("-T/--top must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    target = ProcessExit(args.pid) if args.pid else None
    try:
        with SysLat(pid=args.pid, tid=args.tid, comm=args.comm, syscalls=args.syscalls,
                    unit=args.unit, failed_only=args.failures) as tool:
            who = (f"PID {args.pid}" if args.pid else f"TID {args.tid}" if args.tid
                   else "all processes")
            if args.comm:
                who += f" named {args.comm}"
            which = ", ".join(args.syscalls) if args.syscalls else "all syscalls"
            if args.failures:
                which = f"failed calls of {which}"
            with loop.stopping(args.duration) as stop:
                cli.info(f"Tracing {which} of {who}... Hit Ctrl-C to end.")
                # With -p, the loop also ends when the traced process is gone.
                stop.run(None if target is None else lambda ms: target.wait(ms / 1000),
                         interval=args.interval,
                         on_interval=lambda: _print(tool.results(clear=True), args))
            if not args.interval or tool.results():
                _print(tool.results(clear=bool(args.interval)), args)
    finally:
        if target is not None:
            target.close()
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
