"""Ring and perf buffers: events decoded through the object's BTF.

tests/progs/events.bpf.c emits one `struct event` (events.h) per getppid()
from this process to a ring buffer, a perf buffer and a ring buffer declared
without the lbc.h macro; getpgid() emits a burst that overflows a one-page
perf buffer.  The tool's poll group polls ring and perf buffers together;
a ring buffer opened without a callback is read with read() and events().
"""

from __future__ import annotations

import ctypes as ct
import os
import selectors

import pytest

from lcc import ClosedError, LccError

from kutil import trigger

pytestmark = pytest.mark.bpf

BURST = 128  # events.h


@pytest.fixture(params=["mmap", "libbpf"])
def ring_backend(request, monkeypatch):
    """Each of lcc's two ring buffer consumers in turn."""
    monkeypatch.setenv("LCC_RINGBUF", request.param)
    return request.param


@pytest.fixture
def tool(load, ring_backend):
    return load("events.bpf.c")


def _comm() -> str:
    with open("/proc/self/comm") as f:
        return f.read().strip()


def check_event(e, seq: int, btf) -> None:
    """Every member of struct event as events.bpf.c's fill() wrote it."""
    assert e.pid == os.getpid()
    assert e.comm == _comm()                       # char[16] -> str
    assert e.tag == "lcc!"
    assert e.in_.pt.x == -7 and e.in_.pt.y == 65535  # nested structs, signed and not
    assert e.in_.bytes == (1, 2, 3)                 # u8[3] stays numbers
    assert e.arr == (seq, seq * 2, 0xDEADBEEFCAFE)  # u64[3]
    assert e.un.word == 0x04030201                  # union: both views of one word
    assert e.un.b == (1, 2, 3, 4)
    assert (e.bits.a, e.bits.b, e.bits.c, e.bits.sb) == (5, 17, 0xABCDEF, -3)  # bitfields
    assert e.color == 40 and btf.enum("color").names[e.color] == "BLUE"
    assert e.neg == -42
    assert e.alias_a == 77 and e.alias_b == 77      # anonymous union members
    assert e.seq == seq
    d = e.to_dict()
    assert d["in_"] == {"pt": {"x": -7, "y": 65535}, "bytes": [1, 2, 3]}
    assert d["alias_a"] == 77 and d["bits"]["sb"] == -3


def test_ring_buffer_events_decoded(tool, ring_backend):
    got = []
    rb = tool.maps["rb"]
    assert str(rb.event_type) == "struct event"
    buf = rb.open_ring_buffer(got.append)
    if ring_backend == "libbpf":
        assert buf.backend == "libbpf"
    trigger()
    trigger()
    assert tool.ring_buffer_poll(1000) == 2
    assert [e.seq for e in got] == [1, 2]
    for e in got:
        check_event(e, e.seq, tool.obj.btf)


def test_ring_buffer_consume_and_map_level_poll(tool):
    got = []
    rb = tool.maps["rb"]
    rb.open_ring_buffer(lambda ctx, e, size: got.append((e, size)))  # BCC's three arguments
    assert rb.ring_buffer_consume() == 0
    trigger()
    assert rb.ring_buffer_consume() == 1
    e, size = got[0]
    assert size == rb.event_codec.size
    check_event(e, 1, tool.obj.btf)
    trigger()
    assert rb.ring_buffer_poll(1000) == 1 and len(got) == 2


def test_perf_buffer_events_decoded(tool):
    got = []
    pb = tool.maps["pb"]
    pb.open_perf_buffer(lambda cpu, e, size: got.append((cpu, e, size)))
    trigger()
    assert pb.perf_buffer_poll(1000) == 1
    cpu, e, size = got[0]
    assert 0 <= cpu < os.cpu_count()
    assert size >= pb.event_codec.size
    check_event(e, 1, tool.obj.btf)
    # pyLCC: the raw bytes and map.event() give the same event back
    raw = ct.string_at(e, size)
    assert len(raw) == size
    assert pb.event(raw) == e
    assert pb.event(raw[:pb.event_codec.size]) == e


def test_callback_exception_stops_poll_and_is_raised(tool):
    class Boom(Exception):
        pass

    seen = []

    def cb(e):
        seen.append(e.seq)
        raise Boom(e.seq)

    tool.maps["rb"].open_ring_buffer(cb)
    trigger()
    trigger()
    with pytest.raises(Boom):
        tool.ring_buffer_poll(1000)
    assert seen == [1]  # the second event was not delivered...
    with pytest.raises(Boom):
        tool.ring_buffer_consume()
    assert seen == [1, 2]  # ...until the next call


def test_perf_callback_exception_is_raised(tool):
    def cb(cpu, e, size):
        raise RuntimeError("from the callback")

    tool.maps["pb"].open_perf_buffer(cb)
    trigger()
    with pytest.raises(RuntimeError, match="from the callback"):
        tool.perf_buffer_poll(1000)


def test_lost_perf_samples_are_counted(tool):
    small = tool.maps["pb_small"]
    got, lost = [], []
    buf = small.open_perf_buffer(lambda e: got.append(e.seq), lost_cb=lost.append)
    # One page per CPU cannot hold a burst: the kernel drops the rest and
    # reports the count in front of the next sample that fits -- on the same
    # CPU's buffer, so both bursts must run on one CPU.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        os.getpgid(0)
        small.perf_buffer_poll(1000)
        first = len(got)
        assert 0 < first < BURST
        os.getpgid(0)
        small.perf_buffer_poll(1000)
    finally:
        os.sched_setaffinity(0, cpus)
    assert buf.lost == BURST - first
    assert sum(lost) == buf.lost
    assert buf.events == len(got)


def test_buffers_work_with_selectors(tool):
    got = []
    rb = tool.maps["rb"].open_ring_buffer(got.append)
    pb = tool.maps["pb"].open_perf_buffer(lambda cpu, e, size: got.append(e))
    with selectors.DefaultSelector() as sel:
        sel.register(rb.fileno(), selectors.EVENT_READ, rb)
        sel.register(pb.fileno(), selectors.EVENT_READ, pb)
        assert sel.select(0) == []
        trigger()
        ready = set()
        while len(got) < 2:
            for key, _ in sel.select(5):
                ready.add(key.data)
                key.data.consume()
    assert ready == {rb, pb}
    assert [e.seq for e in got] == [1, 1]


def test_both_ring_buffers_polled_together(tool):
    plain, typed = [], []
    tool.maps["rb_plain"].set_event_type("struct event")
    tool.maps["rb_plain"].open_ring_buffer(plain.append)
    tool.maps["rb"].open_ring_buffer(typed.append)
    trigger()
    while len(plain) + len(typed) < 2:
        tool.ring_buffer_poll(1000)
    assert plain == typed


def test_event_type_by_name_for_a_plain_map(tool):
    plain = tool.maps["rb_plain"]
    assert plain.event_type is None
    raw = []
    plain.open_ring_buffer(raw.append)  # without a type: bytes
    trigger()
    plain.ring_buffer_poll(1000)
    assert isinstance(raw[0], bytes)
    with pytest.raises(LccError, match="set_event_type"):
        plain.event(raw[0])
    with pytest.raises(LccError, match="struct nope"):
        plain.set_event_type("struct nope")
    plain.set_event_type("struct event")
    check_event(plain.event(raw[0]), 1, tool.obj.btf)
    got = []
    plain.open_ring_buffer(got.append)  # now decoded
    trigger()
    plain.ring_buffer_poll(1000)
    check_event(got[0], 2, tool.obj.btf)


def test_raw_events_on_request(tool):
    got = []
    tool.maps["rb"].open_ring_buffer(got.append, raw=True)
    trigger()
    tool.ring_buffer_poll(1000)
    assert isinstance(got[0], bytes)
    check_event(tool.maps["rb"].event(got[0]), 1, tool.obj.btf)


def test_buffers_closed_with_the_tool(tool):
    rb = tool.maps["rb"].open_ring_buffer(lambda e: None)
    pb = tool.maps["pb"].open_perf_buffer(lambda e: None)
    tool.close()
    with pytest.raises(ClosedError):
        rb.poll(0)
    with pytest.raises(ClosedError):
        pb.poll(0)
    with pytest.raises(ClosedError):
        tool.ring_buffer_poll(0)


# -- the tool's poll group -------------------------------------------------------------

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_one_poll_group_delivers_a_ring_and_a_perf_buffer(tool):
    ring, perf = [], []
    tool.maps["rb"].open_ring_buffer(lambda e: ring.append(e.seq))
    g = tool.poll_group
    assert tool.poll_group is g  # one per tool
    tool.maps["pb"].open_perf_buffer(lambda e: perf.append(e.seq))  # joins as it opens
    assert {b.kind for b in g.buffers} == {"ring", "perf"}
    assert g.poll(0) == 0
    trigger()
    assert g.poll(1000) == 2  # both, through one epoll_wait
    assert (ring, perf) == ([1], [1])
    trigger()
    assert g.consume() == 2 and (ring, perf) == ([1, 2], [1, 2])


def test_bcc_polls_wait_for_their_own_kind_through_the_group(tool):
    ring, perf = [], []
    tool.maps["rb"].open_ring_buffer(lambda e: ring.append(e.seq))
    tool.maps["pb"].open_perf_buffer(lambda e: perf.append(e.seq))
    trigger()
    assert tool.perf_buffer_poll(1000) == 1 and (ring, perf) == ([], [1])
    assert tool.ring_buffer_poll(1000) == 1 and ring == [1]
    trigger()
    assert tool.ring_buffer_consume() == 1 and perf == [1]
    assert tool.perf_buffer_poll(0) == 1 and perf == [1, 2]


def test_the_poll_group_fileno_drives_an_event_loop(tool):
    import asyncio

    got = []
    tool.maps["rb"].open_ring_buffer(lambda e: got.append(("ring", e.seq)))
    tool.maps["pb"].open_perf_buffer(lambda e: got.append(("perf", e.seq)))
    g = tool.poll_group

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def ready() -> None:
            g.consume()
            if len(got) == 2 and not done.done():
                done.set_result(None)

        loop.add_reader(g.fileno(), ready)
        try:
            trigger()
            await asyncio.wait_for(done, 10)
        finally:
            loop.remove_reader(g.fileno())

    asyncio.run(main())
    assert sorted(got) == [("perf", 1), ("ring", 1)]


def test_the_poll_group_closes_with_the_tool(load, ring_backend):
    fds = _fds()
    tool = load("events.bpf.c")
    tool.maps["rb"].open_ring_buffer(lambda e: None)
    tool.maps["pb"].open_perf_buffer(lambda e: None)
    g = tool.poll_group
    tool.close()
    assert g.closed
    assert _fds() == fds
    with pytest.raises(ClosedError):
        tool.poll_group


# -- pulling events -----------------------------------------------------------------------

def test_ring_buffer_read_and_events(tool, ring_backend):
    rb = tool.maps["rb"].open_ring_buffer()  # no callback: the events wait for read()
    assert rb.backend == ring_backend and rb.callback is None
    assert rb.read(0) is None
    with pytest.raises(LccError, match="read"):
        rb.poll(0)
    for _ in range(3):
        trigger()
    e = rb.read(timeout=5)
    check_event(e, 1, tool.obj.btf)
    assert [e.seq for e in rb.events(timeout=0)] == [2, 3]
    assert rb.read(timeout=0.01) is None
    assert rb.delivered == 3
    with pytest.raises(LccError, match="no ring buffer"):
        tool.ring_buffer_poll(0)  # a ring read with read() is not the group's
    got = []
    tool.maps["rb"].open_ring_buffer(got.append)  # now with a callback
    trigger()
    assert tool.ring_buffer_poll(1000) == 1 and got[0].seq == 4
    tool.close()
    with pytest.raises(ClosedError):
        rb.read(0)
