"""Buffers polled by one thread and closed by another (or by a tool's finalizer).

libbpf's ``perf_buffer__poll``/``__consume`` run without the GIL and read
the buffer's memory: freeing the buffer while a thread is inside used to
crash the process (SIGSEGV, exit status 139), typically at exit, when the
finalizer of a tool ran while a pyLCC-style event thread still polled.  The
tests run the pattern in a child process and check its exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpf

CLIENT = Path(__file__).resolve().parents[2] / "client"

PROG = r"""
#include "lbc.h"

struct event { u32 pid; u32 n; };

LBC_PERF_OUTPUT(events, struct event, 8);

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    struct event e = {};

    e.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &e, sizeof(e));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""

# The child: a thread makes events all the time; each round opens a perf
# buffer and polls it from a thread of its own until it has delivered events
# (so that closing finds it busy).  Even rounds poll through the map (pyLCC's
# endless perf_buffer_poll) and close the tool from the main thread; odd
# rounds poll the buffer itself and close the tool from a third thread.  The
# last tool is left polling when the process exits: its finalizer closes it.
CHILD = r"""
import os, sys, threading, time
from lcc import ClbcBase

obj = open(sys.argv[1], "rb").read()
rounds = int(sys.argv[2])
running = True

def make_events():
    while running:
        for _ in range(20):
            os.getppid()
        time.sleep(0.0002)

def poll_map(events):
    events.perf_buffer_poll()  # pyLCC's endless poll: ends when the buffer is closed

def poll_buffer(buf):
    while not buf.closed:
        buf.poll(-1)

threading.Thread(target=make_events, daemon=True).start()
for i in range(rounds + 1):
    tool = ClbcBase("threads", obj=obj)
    events = tool.maps["events"]
    buf = events.open_perf_buffer(lambda cpu, e, size: None)
    if i % 2:
        poller = threading.Thread(target=poll_buffer, args=(buf,), daemon=True)
    else:
        poller = threading.Thread(target=poll_map, args=(events,), daemon=True)
    poller.start()
    deadline = time.monotonic() + 10
    while buf.delivered < 10 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert buf.delivered >= 10, "no events reached the polling thread"
    if i == rounds:
        break  # left polling: the finalizer closes it at exit
    if i % 2:
        closer = threading.Thread(target=tool.close)
        closer.start()
        closer.join(10)
    else:
        tool.close()
    poller.join(10)
    assert not poller.is_alive(), "the polling thread did not end when its buffer closed"
    assert buf.closed
running = False
print("rounds", rounds, flush=True)
"""


def run_child(script: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CLIENT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_perf_buffer_closed_while_polled_100_times(compile_prog, tmp_path):
    obj = tmp_path / "threads.bpf.o"
    obj.write_bytes(compile_prog(PROG))
    r = run_child(CHILD, obj, 100)
    assert r.returncode == 0, f"exit status {r.returncode}\n{r.stderr[-3000:]}"
    assert r.stdout.strip() == "rounds 100"
    assert "Traceback" not in r.stderr, r.stderr
