"""offcpu end to end: it catches a thread the test puts to sleep and a child blocked on a pipe.

Each sleeper starts blocking only after offcpu is attached, so its
switch-out is stamped; the off-CPU time reported is then at least as long
as the sleep (a lower bound the kernel guarantees, not a timing guess).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from gatedchild import GatedChild
from toolproc import EXAMPLES, load_example

pytestmark = pytest.mark.bpf

TOOL = EXAMPLES / "offcpu" / "offcpu.py"
SLEEP_S = 0.2
SCHED_FUNCS = ("schedule", "__schedule")


@pytest.fixture(scope="module")
def offcpu():
    return load_example("offcpu")


def _funcs(stack):
    return [fr.split("+")[0] for fr in stack]


class Sleeper:
    """A thread that waits for go(), then sleeps SLEEP_S once and ends."""

    def __init__(self) -> None:
        self._go = threading.Event()
        self._ready = threading.Event()
        self.tid = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        self._ready.set()
        self._go.wait()
        time.sleep(SLEEP_S)

    def go(self) -> None:
        self._go.set()
        self.thread.join()


def test_catches_a_sleeping_thread(offcpu):
    sleeper = Sleeper()
    events = []
    with offcpu.OffCpu(min_us=int(SLEEP_S * 1e6) // 2, states="S", tid=sleeper.tid) as tool:
        tool.open_events(events.append)
        sleeper.go()
        tool.drain()  # the event was sent when the thread came back on CPU
        top = tool.top_stacks()
    mine = [e for e in events if e.tid == sleeper.tid and "do_nanosleep" in _funcs(e.stack)]
    assert mine, f"no nanosleep event for tid {sleeper.tid}: {events}"
    e = mine[0]
    assert e.delta_ns >= SLEEP_S * 1e9
    assert e.state == "S" and e.pid == os.getpid()
    funcs = _funcs(e.stack)
    assert any(f in SCHED_FUNCS for f in funcs)
    assert "hrtimer_nanosleep" in funcs or "common_nsleep" in funcs
    assert all("+0x" in fr for fr in e.stack)  # symbolized func+0xoff
    # The summary has the same stack with at least this period in it.
    s = next(s for s in top if s.stack_id == e.stack_id)
    assert s.count >= 1 and s.total_ns >= e.delta_ns and s.max_ns >= e.delta_ns
    assert s.state == "S"


def test_state_filter_excludes_other_states(offcpu):
    sleeper = Sleeper()
    events = []
    with offcpu.OffCpu(min_us=1, states="D", tid=sleeper.tid) as tool:
        tool.open_events(events.append)
        sleeper.go()
        tool.drain()
    # A nanosleep is an interruptible (S) sleep: a D-only trace must not see it.
    assert not [e for e in events if "do_nanosleep" in _funcs(e.stack)]
    assert all(e.state == "D" for e in events)


def test_bad_state_is_a_clear_error(offcpu):
    from lcc import LccError
    with pytest.raises(LccError, match="unknown task state"):
        offcpu.state_mask("SQ")
    assert offcpu.state_mask("all") == (1 << len(offcpu.STATE_LETTERS)) - 1


def _blocked_in_read(pid: int) -> bool:
    with open(f"/proc/{pid}/syscall") as f:
        nr = f.read().split()[0]
    with open(f"/proc/{pid}/stat") as f:
        state = f.read().rsplit(")", 1)[1].split()[0]
    return nr == "0" and state == "S"


def test_cli_catches_a_child_blocked_on_a_pipe():
    child = GatedChild("os.read(0, 1)", stdin=subprocess.PIPE)
    tool = None
    try:
        tool = subprocess.Popen([sys.executable, str(TOOL), "-p", str(child.pid), "--state",
                                 "S", "-m", "100000", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = tool.stderr.readline()
        assert line.startswith("Tracing"), line + tool.stderr.read()
        child.release()
        deadline = time.monotonic() + 30
        while not _blocked_in_read(child.pid):  # a condition, checked until it holds
            assert time.monotonic() < deadline, "child never blocked in read()"
            time.sleep(0.01)
        blocked_at = time.monotonic()
        time.sleep(0.3)  # the length of the block, measured from a known-blocked child
        held = time.monotonic() - blocked_at  # the child wakes only after the write below
        child.proc.stdin.write("x")
        child.proc.stdin.flush()
        child.wait()
        tool.send_signal(signal.SIGINT)
        out, err = tool.communicate(timeout=30)
        assert tool.returncode == 0, err
    finally:
        child.kill()
        if tool is not None and tool.poll() is None:
            tool.kill()
            tool.wait()
    recs = [json.loads(x) for x in out.splitlines()]
    events = [r for r in recs if r["type"] == "event"]
    stacks = [r for r in recs if r["type"] == "stack"]
    piped = [e for e in events if any("pipe_read" in f for f in _funcs(e["stack"]))]
    assert piped, events
    e = piped[0]
    assert e["pid"] == child.pid and e["tid"] == child.pid and e["state"] == "S"
    assert e["delta_ns"] >= held * 1e9
    assert any(f in SCHED_FUNCS for f in _funcs(e["stack"]))
    assert any(s["stack_id"] == e["stack_id"] and s["count"] >= 1 for s in stacks)


def test_cli_help():
    r = subprocess.run([sys.executable, str(TOOL), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--state" in r.stdout and "--duration" in r.stdout
