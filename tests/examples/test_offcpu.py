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
from toolproc import EXAMPLES, load_example, wait_until

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


def test_tracer_frames_are_stripped(offcpu):
    stack = ["bpf_prog_6deef7357e7b4530_sched_switch+0x59", "bpf_trace_run4+0x7d",
             "__bpf_trace_sched_switch+0x10", "__traceiter_sched_switch+0x3a",
             "__schedule+0x628", "schedule+0x23", "do_nanosleep+0x5e"]
    assert offcpu.strip_tracer_frames(stack) == stack[4:]
    assert offcpu.strip_tracer_frames(stack[4:]) == stack[4:]
    # Only from the top: the same names deeper in are the task's own.
    tail = ["schedule+0x1", "bpf_prog_x+0x1"]
    assert offcpu.strip_tracer_frames(tail) == tail


def test_library_stacks_have_no_tracer_frames_and_fold(offcpu):
    sleeper = Sleeper()
    with offcpu.OffCpu(min_us=int(SLEEP_S * 1e6) // 2, states="S", tid=sleeper.tid) as tool:
        sleeper.go()
        top = tool.top_stacks(None)
        folded = tool.folded()
    assert top
    for s in top:
        assert not s.stack[0].startswith(offcpu.TRACER_FRAMES), s.stack
    mine = {k: v for k, v in folded.items() if "do_nanosleep" in k.split(";")}
    assert mine, folded
    stack, us = next(iter(mine.items()))
    assert us >= SLEEP_S * 1e6
    names = stack.split(";")
    assert names[-1] in SCHED_FUNCS and "+0x" not in stack  # root first, offsets folded
    assert names.index("do_nanosleep") < names.index(names[-1])


def test_cli_folded_and_svg(tmp_path):
    from toolproc import ToolProcess
    svg = tmp_path / "off.svg"
    child = GatedChild("time.sleep(0.3)", setup="import time")
    try:
        with ToolProcess("offcpu", "-p", str(child.pid), "--state", "S", "-m", "100000",
                         "-f", "--svg", str(svg)) as tool:
            child.go()
            assert tool.stop() == 0, "\n".join(tool.stderr)
    finally:
        child.kill()
    lines = [ln for ln in tool.stdout if ln.strip()]
    assert lines and all(ln.rsplit(" ", 1)[1].isdigit() for ln in lines), lines
    slept = [ln for ln in lines if "do_nanosleep" in ln.split(" ")[0].split(";")]
    assert slept and int(slept[0].rsplit(" ", 1)[1]) >= 300_000, lines
    import xml.etree.ElementTree as ET
    root = ET.parse(svg).getroot()
    names = {g.get("data-name") for g in root.iter("{http://www.w3.org/2000/svg}g")}
    assert "do_nanosleep" in names
    assert any(f"wrote {svg}" in ln for ln in tool.stderr)


def test_cli_folded_refuses_json():
    r = subprocess.run([sys.executable, str(TOOL), "-f", "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "choose one" in r.stderr


SLEEPER_C = r"""
#include <stdio.h>
#include <time.h>

/* nanosleep(2) made right here (x86_64), so that the user stack's innermost
 * frame is this function, whatever the C library's frame pointers. */
__attribute__((noinline)) void lcc_offcpu_sleeper(void)
{
	struct timespec ts = {0, 200000000};
	long ret;

	asm volatile("syscall" : "=a"(ret) : "a"(35L), "D"(&ts), "S"(0L)
		     : "rcx", "r11", "memory");
}

int main(void)
{
	char line[8];

	while (fgets(line, sizeof(line), stdin)) {
		lcc_offcpu_sleeper();
		puts("done");
		fflush(stdout);
	}
	return 0;
}
"""


@pytest.mark.bpf
def test_user_stacks_name_the_function_that_blocked(offcpu, tmp_path):
    import platform
    import shutil
    if platform.machine() != "x86_64" or shutil.which("cc") is None:
        pytest.skip("the test program makes its syscall in x86_64 assembly, built with cc")
    (tmp_path / "sleeper.c").write_text(SLEEPER_C)
    subprocess.run(["cc", "-O0", "-fno-omit-frame-pointer", "-o", str(tmp_path / "sleeper"),
                    str(tmp_path / "sleeper.c")], check=True)
    child = subprocess.Popen([str(tmp_path / "sleeper")], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        got: list = []
        with offcpu.OffCpu(min_us=100_000, states="S", pid=child.pid,
                           user_stacks=True) as tool:
            tool.open_events(got.append)
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "done\n"
            wait_until(lambda: got, 10, step=lambda: tool.poll(100))
            (e,) = got
            assert e.pid == child.pid and e.delta_ns >= 150_000_000
            assert _funcs(e.ustack)[0] == "lcc_offcpu_sleeper", e.ustack
            assert "main" in _funcs(e.ustack)
            (total,) = [s for s in tool.top_stacks(None) if s.ustack]
            assert _funcs(total.ustack)[0] == "lcc_offcpu_sleeper"
            # folded: user frames below the kernel's, root first
            (line,) = [k for k in tool.folded() if "lcc_offcpu_sleeper" in k]
            names = [f.split()[0] for f in line.split(";")]  # "func [binary]" -> "func"
            assert names.index("lcc_offcpu_sleeper") < names.index(_funcs(e.stack)[0]), line
    finally:
        child.stdin.close()
        child.wait(10)
