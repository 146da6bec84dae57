#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""syslat: per-syscall latency histograms for a process, a thread or a command.

    syslat -p 1234                 # every syscall of process 1234, until it exits or Ctrl-C
    syslat -p 1234 read write      # only read and write
    syslat -c nginx -d 10 --hist   # processes named nginx, 10 s, BCC-style histograms
    syslat -p 1234 --json          # one JSON object per syscall

At exit (duration over, Ctrl-C, SIGTERM, or the traced process exiting) it
prints, for each syscall, a ``MIN -> MAX : PCT% TOTAL`` table of its latency
and the average, busiest syscall first.  ``-i SECONDS`` prints and clears
every interval instead.

As a library::

    with SysLat(pid=1234, syscalls=["read"]) as tool:
        ...
        for s in tool.results():
            print(s.name, s.count, s.hist)
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from lcc import ClbcBase, LccError, loop  # noqa: E402
from lcc.hist import Log2Hist, render_summary  # noqa: E402
from lcc.syscalls import syscall_table  # noqa: E402

MAX_SYSCALLS = 512  # SYSLAT_MAX_SYSCALLS in syslat.h
UNITS = {"ns": 1, "us": 1000, "ms": 1000_000}
UNIT_LABELS = {"ns": "nsecs", "us": "usecs", "ms": "msecs"}


@dataclass(frozen=True)
class SyscallLatency:
    """What syslat measured for one syscall: counts, times (ns) and the log2 histogram."""

    nr: int
    name: str
    count: int
    total_ns: int
    max_ns: int
    hist: Log2Hist  # in ``unit``
    unit: str

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"syscall": self.name, "nr": self.nr, "count": self.count,
                "total_ns": self.total_ns, "avg_ns": round(self.avg_ns, 1),
                "max_ns": self.max_ns, "unit": self.unit, "hist": self.hist.to_dict()}

    def render(self, star_hist: bool = False) -> str:
        """The syscall's summary table (or BCC-style star histogram) with its header."""
        div = UNITS[self.unit]
        label = UNIT_LABELS[self.unit]
        head = (f"{self.name} ({self.nr}): {self.count} calls, "
                f"total {self.total_ns / div:.2f} {label}, max {self.max_ns / div:.2f} {label}")
        if star_hist:
            body = self.hist.render(label) + f"\naverage: {self.avg_ns / div:.2f} {label}"
        else:
            body = render_summary(self.hist, self.total_ns / div, label)
        return f"{head}\n{body}"


class SysLat(ClbcBase):
    """Syscall latency of one process (``pid``), thread (``tid``) or command (``comm``).

    ``syscalls``: names to trace (default: all).  ``unit``: histogram unit,
    ``ns``/``us``/``ms``.  With no pid or tid filter, every process but this one is traced.
    Raises UnknownSyscall for a name this architecture lacks; needs root.
    """

    def __init__(self, pid: int | None = None, tid: int | None = None,
                 comm: str | None = None, syscalls: Iterable[str] = (),
                 unit: str = "us", **kw: Any) -> None:
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
        }
        if comm:
            rodata.update(filter_comm=True, targ_comm=comm[:15])
        super().__init__("syslat", rodata=rodata, **kw)

    def results(self, clear: bool = False) -> list[SyscallLatency]:
        """Every syscall seen so far, the most total time first; ``clear`` starts afresh."""
        hists_map, stats_map = self.maps["hists"], self.maps["stats"]
        slots = [(k.nr, k.slot, v) for k, v in hists_map.items()]
        stats = dict(stats_map.items())
        if clear:
            hists_map.clear()
            stats_map.clear()
        hists = Log2Hist.grouped(slots)
        out = []
        for nr, st in stats.items():
            out.append(SyscallLatency(nr, self.table.name(nr), st.count, st.total_ns,
                                      st.max_ns, hists.get(nr, Log2Hist()), self.unit))
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


def _print(results: list[SyscallLatency], args: argparse.Namespace) -> None:
    out = sys.stdout
    stamp = time.strftime("%H:%M:%S")
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
    for r in results:
        out.write(r.render(args.hist) + "\n\n")
    out.flush()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="syslat", description="Per-syscall latency histograms of a process, thread or "
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
    cli.add_common_args(p)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    target = ProcessExit(args.pid) if args.pid else None
    try:
        with SysLat(pid=args.pid, tid=args.tid, comm=args.comm, syscalls=args.syscalls,
                    unit=args.unit) as tool:
            who = (f"PID {args.pid}" if args.pid else f"TID {args.tid}" if args.tid
                   else "all processes")
            if args.comm:
                who += f" named {args.comm}"
            which = ", ".join(args.syscalls) if args.syscalls else "all syscalls"
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
