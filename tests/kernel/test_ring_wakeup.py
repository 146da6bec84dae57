"""lbc.h's ring buffer wakeup helpers in the kernel (``lbc_ringbuf_submit``, ``lbc_ringbuf_output``).

The program (tests/progs/ringwake.bpf.c) sends one 16-byte event (24 bytes
in the ring, with its header) per getppid() of this process into a 16 KiB
ring, whose watermark is an eighth: 2048 bytes, reached by the 86th unread
event.  Below it the
reader is not woken, and a poll with a timeout still delivers every event
(no tail left stranded); the event that crosses it wakes the reader.  Run
for both helpers and both consumers (the mmap reader and libbpf's).
"""

from __future__ import annotations

import os
import select

import pytest
from lcc import ringbuf_mmap

pytestmark = pytest.mark.bpf

BACKENDS = ["mmap", "libbpf"] if ringbuf_mmap.supported() else ["libbpf"]
RECORD = 24  # bytes an event takes in the ring
CROSSING = -(-2048 // RECORD)  # the event whose record takes the unread data to the watermark


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("LCC_RINGBUF", request.param)
    return request.param


@pytest.fixture(params=["submit", "output"])
def tool(request, backend, load):
    return load("ringwake.bpf.c", rodata={"target_pid": os.getpid(),
                                          "use_output": request.param == "output"})


def fire(n: int) -> None:
    for _ in range(n):
        os.getppid()


def woken(buf, timeout: float) -> bool:
    """Whether the ring's epoll fd turns readable within ``timeout`` seconds."""
    return bool(select.select([buf.fileno()], [], [], timeout)[0])


def test_below_the_watermark_a_poll_timeout_delivers_everything(tool):
    got = []
    buf = tool.maps["events"].open_ring_buffer(got.append)
    fire(5)
    # Not signalled: the consumer finds them when its wait runs out.
    assert not woken(buf, 0.2)
    assert buf.poll(50) == 5
    fire(3)
    assert tool.ring_buffer_poll(50) == 3  # the tool's poll group reads rings at a timeout too
    assert [e.seq for e in got] == list(range(8))
    assert all(e.pid == os.getpid() for e in got)
    assert tool.bss.dropped == 0


def test_the_event_that_crosses_the_watermark_wakes_the_reader(tool):
    got = []
    buf = tool.maps["events"].open_ring_buffer(got.append)
    fire(CROSSING - 1)
    assert not woken(buf, 0.2)
    fire(1)
    assert woken(buf, 10)  # the wakeup runs from irq_work: soon, not at once
    assert buf.consume() == CROSSING
    assert [e.seq for e in got] == list(range(CROSSING))


def test_the_last_events_after_the_producer_stops_are_not_stranded(tool):
    got = []
    tool.maps["events"].open_ring_buffer(got.append)
    fire(CROSSING + 10)  # woken once at the crossing; 10 events follow without a wakeup
    delivered = 0
    while delivered < CROSSING + 10:
        n = tool.ring_buffer_poll(50)
        assert n, "a poll that timed out left events in the ring"
        delivered += n
    assert [e.seq for e in got] == list(range(CROSSING + 10))
