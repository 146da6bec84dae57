"""trace_pipe lines without a kernel: BCC's trace_fields() split, and whole lines only."""

from __future__ import annotations

import os

import pytest
from lcc.tracepipe import TraceLine, TracePipe, parse


@pytest.mark.parametrize("line, fields", [
    ("            bash-4242    [003] d..31  1234.567890: bpf_trace_printk: lcc 42\n",
     TraceLine("bash", 4242, 3, "d..31", 1234.56789, "lcc 42")),
    # record-tgid adds a column; irq-info off drops the flags; comms may hold '-' and spaces
    ("  kworker/u8:1-my job-77 (   70) [000] .... 5.000001: bpf_trace_printk: a: b",
     TraceLine("kworker/u8:1-my job", 77, 0, "....", 5.000001, "a: b")),
    ("  python3-9 [12] 88.5: bpf_trace_printk: x", TraceLine("python3", 9, 12, "", 88.5, "x")),
])
def test_parse_splits_like_bcc(line, fields):
    assert parse(line) == fields


def test_parse_refuses_what_is_not_an_event():
    assert parse("CPU:3 [LOST 12 EVENTS]") is None
    assert parse("") is None


def test_pipe_hands_out_whole_lines(tmp_path):
    fifo = tmp_path / "trace_pipe"
    os.mkfifo(fifo)
    with TracePipe(str(fifo)) as pipe:
        w = os.open(fifo, os.O_WRONLY)
        try:
            assert pipe.readline(timeout=0) is None
            os.write(w, b"  a-1 [000] .... 1.0: f: one\n  a-1 [000] .... 2.0: f: tw")
            assert pipe.readline(timeout=1) == "  a-1 [000] .... 1.0: f: one"
            assert pipe.readline(timeout=0) is None  # half a line waits for its end
            os.write(w, b"o\n")
            assert parse(pipe.readline(timeout=1)).msg == "two"
        finally:
            os.close(w)
    pipe.close()  # idempotent


def test_missing_pipe_is_an_lcc_error_with_its_cause(tmp_path):
    from lcc.errors import LccError
    with pytest.raises(LccError, match="cannot open .*nope") as e:
        TracePipe(str(tmp_path / "nope"))
    assert isinstance(e.value.__cause__, FileNotFoundError)
