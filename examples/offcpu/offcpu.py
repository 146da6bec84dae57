#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""offcpu: tasks off CPU longer than a threshold, with the kernel stack where they blocked.

    offcpu                         # sleeping (S) or blocked (D) for 1 ms or more, any task
    offcpu -m 10000 --state D      # uninterruptible waits of 10 ms or more
    offcpu -p 1234 --state RSD     # process 1234, also preempted waits for a CPU (R)
    offcpu -c nginx --json -d 10   # JSON lines, 10 seconds
    offcpu -f -d 10 > out.folded   # folded stacks (flamegraph.pl, speedscope, inferno)
    offcpu -d 10 --svg off.svg     # an interactive flame graph, drawn by lcc

Each off-CPU period longer than ``-m MIN_US`` prints one line (time, pid,
tid, command, state, milliseconds off CPU) and the kernel stack where the
task left the CPU.  At exit (duration over, Ctrl-C or SIGTERM) the stacks
with the most time off CPU are summarised.  With ``-f`` the only output is
the folded stacks at exit, one ``root;...;leaf microseconds`` line per
stack; ``--svg FILE`` writes them as a flame graph (widths are time off CPU).
The tracer's own frames (the tracepoint and BPF program that took the stack)
are stripped from the top of each stack.

As a library::

    with OffCpu(min_us=1000, tid=tid) as tool:
        tool.open_events(print)               # OffCpuEvent per period
        tool.poll(100)
        tool.top_stacks()
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (3 ms) at start
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cli  # noqa: E402  (also makes a source checkout's lcc importable)
from _common import flameout  # noqa: E402
from lcc import ClbcBase, LccError, loop  # noqa: E402

STATE_LETTERS = "RSDTtXZPI"  # OFFCPU_STATE_LETTERS in offcpu.h
# The innermost frames of a stack taken at sched_switch can be the tracing
# machinery itself (the tracepoint iterator, a BPF trampoline or program).
TRACER_FRAMES = ("__traceiter_", "__bpf_trace_", "bpf_trace_run", "bpf_prog_",
                 "bpf_trampoline_", "perf_trace_", "trace_event_raw_event_",
                 "__probestub_", "perf_tp_event", "perf_callchain", "get_perf_callchain",
                 "bpf_get_stackid", "bpf_get_stack")
STATE_NAMES = {"R": "waiting for a CPU (preempted)", "S": "sleeping",
               "D": "uninterruptible", "T": "stopped", "t": "traced", "X": "dead",
               "Z": "zombie", "P": "parked", "I": "idle kernel thread"}


def strip_tracer_frames(frames: list[str]) -> list[str]:
    """``frames`` (innermost first) without the tracer's own frames at the top."""
    i = 0
    while i < len(frames) and frames[i].split("+", 1)[0].startswith(TRACER_FRAMES):
        i += 1
    return frames[i:]


def state_mask(states: str) -> int:
    """Bit mask of state letters (``"SD"``; ``"all"`` for every state)."""
    if states == "all":
        return (1 << len(STATE_LETTERS)) - 1
    mask = 0
    for ch in states:
        i = STATE_LETTERS.find(ch)
        if i < 0:
            raise LccError(f"unknown task state {ch!r}",
                           hint=f"states are letters of {STATE_LETTERS} or 'all'")
        mask |= 1 << i
    return mask


# Records are collections.namedtuples rather than dataclasses or
# typing.NamedTuples: importing ``dataclasses`` (with ``inspect``) costs about
# 10 ms of every start, ``typing`` about 3 ms.

class OffCpuEvent(namedtuple("OffCpuEvent", (
        "pid",       # int
        "tid",       # int
        "comm",      # str
        "state",     # str
        "delta_ns",  # int
        "ts_ns",     # int: switch-in time, ns since boot
        "stack_id",  # int
        "stack",     # Sequence[str] (() by default)
        "ustack",    # Sequence[str]: user frames (-U), innermost first (() by default)
        ), defaults=((), ()))):
    """One off-CPU period: who, in which state, how long, and where it blocked."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {"type": "event", **self._asdict()}


class StackTotal(namedtuple("StackTotal", (
        "state",     # str
        "stack_id",  # int
        "stack",     # list[str]
        "count",     # int
        "total_ns",  # int
        "max_ns",    # int
        "ustack",    # Sequence[str]: user frames (-U), innermost first (() by default)
        ), defaults=((),))):
    """All off-CPU periods over the threshold that blocked at one stack in one state."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {"type": "stack", **self._asdict()}


class OffCpu(ClbcBase):
    """Off-CPU periods of at least ``min_us`` in the given ``states`` (letters, e.g. ``"SD"``).

    Filters: ``pid`` (process), ``tid`` (thread), ``comm``.  The tracer's own
    process is left out unless ``pid`` or ``tid`` names it.  Needs root; owns its ring buffer.
    """

    def __init__(self, min_us: int = 1000, states: str = "SD", pid: int | None = None,
                 tid: int | None = None, comm: str | None = None,
                 max_us: int | None = None, user_stacks: bool = False, **kw: Any) -> None:
        rodata: dict[str, Any] = {
            "targ_tgid": pid or 0, "targ_tid": tid or 0,
            # The tracer leaves itself out, unless it was asked for by pid or tid.
            "self_tgid": 0 if (pid or tid) else os.getpid(),
            "state_mask": state_mask(states), "min_ns": int(min_us) * 1000,
            "max_ns": int(max_us) * 1000 if max_us else (1 << 64) - 1,
        }
        if comm:
            rodata.update(filter_comm=True, targ_comm=comm[:15])
        self.user_stacks = user_stacks
        if user_stacks:
            rodata["user_stacks"] = True
        else:  # a stack map is allocated whole: keep the unused one small
            kw["map_sizes"] = {"ustacks": 1, **kw.get("map_sizes", {})}
        super().__init__("offcpu", rodata=rodata, **kw)

    def stack(self, stack_id: int) -> list[str]:
        """The kernel frames of a stack id, innermost first, as ``func+0xoff``
        (one marker frame for a stack that was not recorded or is gone);
        the tracer's own frames are left out (:func:`strip_tracer_frames`)."""
        return strip_tracer_frames(self.maps["kstacks"].frames(stack_id))

    def ustack(self, stack_id: int, pid: int) -> list[str]:
        """The user frames of a stack id taken in process ``pid``, innermost first,
        as ``func+0xoff [binary]`` (hex where the process or its symbols are gone);
        empty without user stacks or for a task that has none (a kernel thread)."""
        if not self.user_stacks or stack_id < 0:
            return []
        return self.maps["ustacks"].frames(stack_id, pid=pid)

    def _event(self, e: Any) -> OffCpuEvent:
        return OffCpuEvent(pid=e.pid, tid=e.tid, comm=e.comm, state=STATE_LETTERS[e.state],
                           delta_ns=e.delta_ns, ts_ns=e.ts, stack_id=e.kstack_id,
                           stack=self.stack(e.kstack_id), ustack=self.ustack(e.ustack_id, e.pid))

    def open_events(self, callback: Callable[[OffCpuEvent], Any]) -> None:
        """Deliver each off-CPU period to ``callback`` as an :class:`OffCpuEvent`."""
        self.maps["events"].open_ring_buffer(lambda e: callback(self._event(e)))

    def poll(self, timeout_ms: int = -1) -> int:
        """Wait up to ``timeout_ms`` and deliver waiting events; returns how many."""
        return self.maps["events"].ring_buffer_poll(timeout_ms)

    def drain(self) -> int:
        """Deliver the events already waiting."""
        return self.maps["events"].ring_buffer_consume()

    def folded(self) -> dict[str, int]:
        """All stacks as ``{"root;...;leaf": microseconds off CPU}`` (see lcc.flame.fold);
        stacks equal but for offsets, or recorded in different states, are merged."""
        from lcc.flame import fold
        return fold(([*s.stack, *s.ustack], s.total_ns // 1000) for s in self.top_stacks(None))

    def top_stacks(self, n: int | None = 10) -> list[StackTotal]:
        """Stacks with the most time off CPU (over the threshold), largest first."""
        items = sorted(self.maps["totals"].items(), key=lambda kv: -kv[1].total_ns)
        return [StackTotal(STATE_LETTERS[k.state], k.kstack_id, self.stack(k.kstack_id),
                           v.count, v.total_ns, v.max_ns, self.ustack(k.ustack_id, k.tgid))
                for k, v in items[:n]]


# -- command line ------------------------------------------------------------------

class _Printer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, sys.stdout
        self.header = False

    def event(self, e: OffCpuEvent) -> None:
        if self.args.json:
            cli.print_json(e.to_dict())
        else:
            if not self.header:
                self.out.write(f"{'TIME':<8} {'PID':<7} {'TID':<7} {'COMM':<16} "
                               f"{'STATE':<5} {'OFF(ms)':>10}\n")
                self.header = True
            self.out.write(f"{time.strftime('%H:%M:%S'):<8} {e.pid:<7} {e.tid:<7} "
                           f"{e.comm:<16} {e.state:<5} {e.delta_ns / 1e6:>10.3f}\n")
            if not self.args.no_stacks:
                self._frames(e.stack, e.ustack)
        self.out.flush()

    def summary(self, stacks: list[StackTotal]) -> None:
        if self.args.json:
            for s in stacks:
                cli.print_json(s.to_dict())
        else:
            self.out.write(f"\nTop {len(stacks)} off-CPU stacks by total time:\n")
            for s in stacks:
                self.out.write(f"\n  state {s.state} ({STATE_NAMES[s.state]}): {s.count} times, "
                               f"total {s.total_ns / 1e6:.3f} ms, max {s.max_ns / 1e6:.3f} ms\n")
                self._frames(s.stack, s.ustack)
        self.out.flush()

    def _frames(self, stack: list[str], ustack: list[str]) -> None:
        """Kernel frames, then (-U) a ``--`` line and the user frames, as BCC prints them."""
        for fr in stack:
            self.out.write(f"    {fr}\n")
        if ustack:
            self.out.write("    --\n")
            for fr in ustack:
                self.out.write(f"    {fr}\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        formatter_class=cli.formatter(), prog="offcpu", description="Tasks off CPU longer than a threshold, in a chosen state, "
        "with the kernel stack where they blocked; top stacks at exit.",
        epilog="states: R waiting for a CPU, S sleeping, D uninterruptible, I idle kernel "
               "thread, T stopped, ... (ps(1) letters; 'all' for every state)")
    p.add_argument("-m", "--min-us", type=int, default=1000, metavar="MIN_US",
                   help="report periods of at least MIN_US microseconds (default 1000)")
    p.add_argument("-M", "--max-us", type=int, metavar="MAX_US",
                   help="ignore periods longer than MAX_US")
    p.add_argument("--state", default="SD", metavar="STATES",
                   help="task states to trace, e.g. S, D, SD, RSD, all (default SD)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("-p", "--pid", type=int, help="trace this process only")
    who.add_argument("-t", "--tid", type=int, help="trace this thread only")
    p.add_argument("-c", "--comm", help="trace tasks with this command name only")
    p.add_argument("--no-stacks", action="store_true", help="no stack under each event")
    p.add_argument("-U", "--user-stacks", action="store_true",
                   help="also show the user stack where each task blocked (below a -- line)")
    p.add_argument("--top", type=int, default=10, metavar="N",
                   help="stacks in the summary at exit (default 10)")
    flameout.add_flame_args(p)
    cli.add_common_args(p)
    args = p.parse_args(argv)
    flameout.check_flame_args(p, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with OffCpu(min_us=args.min_us, states=args.state, pid=args.pid, tid=args.tid,
                comm=args.comm, max_us=args.max_us, user_stacks=args.user_stacks) as tool:
        pr = _Printer(args)
        if not args.folded:  # -f: only the folded stacks, from the totals at exit
            tool.open_events(pr.event)
        with loop.stopping(args.duration) as stop:
            cli.info(f"Tracing off-CPU time >= {args.min_us} us in state {args.state}... "
                     "Hit Ctrl-C to end.")
            if args.folded:
                stop.run()
            else:
                stop.run(tool.poll)
                tool.drain()  # what arrived before the stop
        if not args.folded:
            pr.summary(tool.top_stacks(args.top))
        if args.folded or args.svg:
            flameout.write_flame(args, tool.folded(), unit="us",
                                 title=f"Off-CPU time (states {args.state}, us)", palette="blue")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_tool(main))
