"""bpf_printk() output read back from trace_pipe: ClbcBase.trace_fields() and lcc run --printk.

trace_pipe is one stream for the whole system and reading it consumes: another
reader may take a line.  So each test calls getppid(2) again until one of its
own lines ("lcc 42" from its pid) comes back, within a bound that only limits a
failure.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from gatedchild import GatedChild
from lcc import features
from lcc.cli import run as lcc_run
from lcc.errors import ClosedError

from kutil import trigger

pytestmark = [pytest.mark.bpf, pytest.mark.skipif(
    features.tracefs_dir() is None, reason="tracefs is not mounted")]

PROG = Path(__file__).resolve().parent.parent / "progs" / "printk.bpf.c"


def test_trace_fields_reads_this_pids_printk(load):
    tool = load("printk.bpf.c")  # target_pid: this process
    deadline = time.monotonic() + 10
    mine = None
    while mine is None and time.monotonic() < deadline:
        trigger()
        while (f := tool.trace_fields(timeout=0.2)) is not None:
            if f.pid == os.getpid() and f.msg == "lcc 42":
                mine = f
                break
    assert mine is not None, "no 'lcc 42' line of this pid came back from trace_pipe"
    task, pid, cpu, flags, ts, msg = mine
    assert (pid, msg) == (os.getpid(), "lcc 42")
    assert task and cpu >= 0 and ts > 0
    tool.close()  # the pipe is closed with the tool
    with pytest.raises(ClosedError):
        tool.trace_fields(timeout=0)


def test_run_printk_prints_the_lines_as_they_come():
    body = "for _ in range(50):\n    os.getppid()\n"
    with GatedChild(body) as child:
        out, err = io.StringIO(), io.StringIO()

        class Go(io.StringIO):
            def write(self, s: str) -> int:
                if s.startswith("Attached"):
                    child.go()
                return err.write(s)

        code = lcc_run.run(str(PROG), None, 1.5, False, out, err=Go(),
                           rodata={"target_pid": child.pid}, printk=True)

    assert code == 0, err.getvalue()
    mine = [ln for ln in out.getvalue().splitlines()
            if ln.startswith("printk: ") and f"-{child.pid} " in ln and ln.endswith("lcc 42")]
    assert mine, out.getvalue()
