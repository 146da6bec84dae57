"""Ring buffer consumers in the real kernel: every event once, in order, with its values.

Events go to a callback (poll, consume) or are pulled (read, events).

A tracepoint on getppid, filtered to this process, writes ``count`` records
per call with bpf_loop; ``.bss`` knobs pick the record shapes (fixed,
reserve of three sizes, discards, bpf_ringbuf_output of odd sizes).  Each
test runs against both consumers: the mmap reader (``"mmap"``, x86_64) and
libbpf's (``"libbpf"``).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys

import pytest
from lcc import ClbcBase, ringbuf_mmap
from lcc.buffers import RingBuffer

pytestmark = pytest.mark.bpf

SRC = r"""
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

struct tev {
	u64 seq;
	u32 pid;
	u32 size;	/* bytes of the record */
	char tag[8];
};

const volatile u32 target_tgid = 0;
u32 count = 0;	/* records per getppid call */
u32 mode = 0;	/* 0 fixed, 1 sizes 16/24/40, 2 every third discarded, 3 output of 16..32 */
u64 seq = 0;
u64 dropped = 0;

LBC_RINGBUF(rb, struct tev, 1 << 12);
LBC_RINGBUF(big, struct tev, 1 << 22);

struct padded {
	struct tev e;
	char extra[40];	/* 64 bytes: any size & 63 stays inside */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct padded);
} scratch SEC(".maps");

u32 use_big = 0;

static __always_inline void *ring(void)
{
	return use_big ? (void *)&big : (void *)&rb;
}

/* Reserve SZ bytes (a constant), fill the head, then submit or discard. */
#define PUT(SZ, DISCARD)							\
	({									\
		struct tev *e = bpf_ringbuf_reserve(ring(), SZ, 0);		\
		if (!e) {							\
			__sync_fetch_and_add(&dropped, 1);			\
			return 1;						\
		}								\
		e->seq = seq++;							\
		e->pid = target_tgid;						\
		e->size = SZ;							\
		if (SZ >= sizeof(*e))						\
			__builtin_memcpy(((struct tev *)e)->tag, "lcc-tag", 8);	\
		if (DISCARD)							\
			bpf_ringbuf_discard(e, 0);				\
		else								\
			bpf_ringbuf_submit(e, 0);				\
	})

static long emit(u32 i, void *ctx)
{
	if (mode == 1) {
		switch (i % 3) {
		case 0: PUT(16, 0); break;
		case 1: PUT(24, 0); break;
		default: PUT(40, 0); break;
		}
	} else if (mode == 2) {
		if (i % 3 == 2)
			PUT(24, 1);
		else
			PUT(24, 0);
	} else if (mode == 3) {
		u32 zero = 0;
		u64 size = 16 + (u64)(i % 5) * 4;
		struct padded *s = bpf_map_lookup_elem(&scratch, &zero);

		if (!s)
			return 1;
		s->e.seq = seq++;
		s->e.pid = target_tgid;
		s->e.size = size;
		__builtin_memcpy(s->e.tag, "out", 4);
		barrier_var(size);	/* clang knows size <= 32; the verifier must see the mask */
		if (bpf_ringbuf_output(ring(), s, size & 63, 0))
			__sync_fetch_and_add(&dropped, 1);
	} else {
		PUT(24, 0);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	bpf_loop(count, emit, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

BACKENDS = ["mmap", "libbpf"] if ringbuf_mmap.supported() else ["libbpf"]


@pytest.fixture(scope="module")
def obj_bytes(compile_prog):
    return compile_prog(SRC)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("LCC_RINGBUF", request.param)
    return request.param


@pytest.fixture
def tool(backend, obj_bytes):
    t = ClbcBase("ringfast", obj=obj_bytes, rodata={"target_tgid": os.getpid()})
    yield t
    t.close()


def fire(tool, count: int, mode: int = 0, calls: int = 1) -> None:
    """Make the program write ``count`` records per call, ``calls`` times."""
    tool.bss.count = count
    tool.bss.mode = mode
    for _ in range(calls):
        os.getppid()


def open_rb(tool, callback, name="rb") -> RingBuffer:
    buf = tool.maps[name].open_ring_buffer(callback)
    assert buf.backend == os.environ["LCC_RINGBUF"]  # the consumer under test
    return buf


def test_fixed_records_arrive_once_in_order_with_their_values(tool):
    got = []
    open_rb(tool, got.append)
    fire(tool, 50)
    assert tool.maps["rb"].ring_buffer_consume() == 50
    assert [e.seq for e in got] == list(range(50))
    assert {(e.pid, e.size, e.tag) for e in got} == {(os.getpid(), 24, "lcc-tag")}
    assert tool.maps["rb"].ring_buffer_consume() == 0
    assert tool.bss.dropped == 0


def test_records_wrap_around_the_end_of_the_ring(tool):
    # Records of 16, 24 and 40 bytes take 24, 32 and 48 in the ring: 14 rounds
    # of 60 go round the 4096-byte ring seven times, and some records start
    # before its end and finish after it.
    got = []
    buf = open_rb(tool, got.append)
    total = 0
    for _ in range(14):
        fire(tool, 60, mode=1)
        total += buf.consume()
    assert total == 14 * 60 and tool.bss.dropped == 0
    pos, straddling = 0, 0
    for i in range(total):
        rsize = (24, 32, 48)[i % 60 % 3]
        straddling += pos % 4096 + rsize > 4096
        pos += rsize
    assert straddling > 0
    assert [e.seq for e in got] == list(range(total))
    for e in got:
        want = (16, 24, 40)[e.seq % 60 % 3]
        assert e.size == want
        assert e.tag == ("" if want < 24 else "lcc-tag")  # 16-byte records: zero-filled tail
        assert e.pid == os.getpid()


def test_discarded_records_are_skipped(tool):
    got = []
    open_rb(tool, got.append)
    fire(tool, 90, mode=2)
    assert tool.maps["rb"].ring_buffer_poll(1000) == 60
    assert [e.seq for e in got] == [s for s in range(90) if s % 3 != 2]


def test_variable_size_output_records(tool):
    sizes = []

    def cb(ctx, event, size):  # BCC-style callback: ctx, event, record size
        sizes.append((event.seq, event.size, size, event.tag))

    buf = open_rb(tool, cb)
    for _ in range(3):  # 100 records of 24..40 bytes a round: the ring wraps
        fire(tool, 100, mode=3)
        assert buf.consume() == 100
    assert tool.bss.dropped == 0
    assert [s[0] for s in sizes] == list(range(300))
    for seq, esize, size, tag in sizes:
        assert esize == size == 16 + (seq % 100 % 5) * 4
        assert tag == ("out" if size >= 20 else "")  # "out\0" sits at bytes 16..19


def test_a_large_backlog_is_delivered_whole(tool):
    got = []
    tool.bss.use_big = 1
    buf = open_rb(tool, got.append, name="big")
    fire(tool, 20000, calls=5)  # 100000 records of 32 bytes, more than one run
    assert tool.bss.dropped == 0
    n = 0
    while n < 100000:
        n += buf.poll(1000) or pytest.fail(f"only {n} of 100000 records arrived")
    assert [e.seq for e in got] == list(range(100000))


class Stop(Exception):
    pass


def test_a_callback_exception_is_raised_and_the_rest_come_with_the_next_poll(tool):
    seen = []

    def cb(event):
        seen.append(event.seq)
        if event.seq == 3:
            raise Stop("event 3")

    buf = open_rb(tool, cb)
    fire(tool, 10)
    with pytest.raises(Stop, match="event 3"):
        buf.poll(1000)
    assert seen == [0, 1, 2, 3]
    assert buf.poll(1000) == 6
    assert seen == list(range(10))
    assert buf.delivered == 10


def test_fileno_works_with_selectors(tool):
    got = []
    buf = open_rb(tool, got.append)
    with selectors.DefaultSelector() as sel:
        sel.register(buf.fileno(), selectors.EVENT_READ, buf)
        assert sel.select(0) == []  # nothing written yet
        fire(tool, 5)
        ready = sel.select(5)
        assert [key.data for key, _ in ready] == [buf]
        assert buf.consume() == 5
    assert [e.seq for e in got] == list(range(5))


def test_poll_times_out_empty_and_close_is_final(tool):
    buf = open_rb(tool, lambda e: None)
    assert buf.poll(10) == 0
    tool.close()
    with pytest.raises(ValueError):  # ClosedError is a ValueError
        buf.poll(0)


def test_raw_callbacks_get_the_record_bytes(tool):
    got = []
    tool.maps["rb"].open_ring_buffer(got.append, raw=True)
    fire(tool, 3, mode=3)
    assert tool.maps["rb"].ring_buffer_consume() == 3
    assert [len(b) for b in got] == [16, 20, 24]
    assert [int.from_bytes(b[:8], "little") for b in got] == [0, 1, 2]


def test_read_pulls_events_in_order_and_none_on_timeout(tool):
    buf = tool.maps["rb"].open_ring_buffer()
    assert buf.backend == os.environ["LCC_RINGBUF"]
    assert buf.read(0) is None
    fire(tool, 5)
    assert [buf.read(0).seq for _ in range(5)] == list(range(5))
    assert buf.read(timeout=0.01) is None


def test_events_iterates_past_the_read_ahead(tool):
    from lcc.buffers.ring import READ_AHEAD
    tool.bss.use_big = 1
    buf = tool.maps["big"].open_ring_buffer()
    n = 3 * READ_AHEAD + 17  # several refills, of three record sizes
    fire(tool, n, mode=1)
    assert tool.bss.dropped == 0
    got = list(buf.events(timeout=0))
    assert [e.seq for e in got] == list(range(n))
    assert all(e.size == (16, 24, 40)[e.seq % 3] for e in got)
    assert all(e.tag == ("" if e.size == 16 else "lcc-tag") for e in got)
    assert buf.delivered == n


def test_read_waits_for_an_event_from_another_thread(tool):
    import threading
    buf = tool.maps["rb"].open_ring_buffer()
    # The thread's getppid() is this process's (the program filters on the tgid);
    # read() gets the event whether it starts waiting before the thread runs or after.
    t = threading.Thread(target=fire, args=(tool, 1))
    t.start()
    try:
        e = buf.read(timeout=10)
    finally:
        t.join()
    assert e is not None and e.seq == 0


def test_read_raw_records(tool):
    buf = tool.maps["rb"].open_ring_buffer(raw=True)
    fire(tool, 3, mode=3)
    got = list(buf.events(timeout=0))
    assert [len(b) for b in got] == [16, 20, 24]
    assert [int.from_bytes(b[:8], "little") for b in got] == [0, 1, 2]


PRODUCER = """
import os, sys
sys.stdin.readline()  # wait until the program is attached
for _ in range(int(sys.argv[1])):
    os.getppid()
"""


def test_a_concurrent_producer_loses_nothing_and_reorders_nothing(backend, obj_bytes):
    # Another process writes while this one reads: records are reserved,
    # committed and consumed at the same time on both CPUs.
    calls, per_call = 20000, 10
    prod = subprocess.Popen([sys.executable, "-c", PRODUCER, str(calls)], stdin=subprocess.PIPE,
                            text=True)
    try:
        with ClbcBase("ringfast", obj=obj_bytes, rodata={"target_tgid": prod.pid}) as t:
            t.bss.count, t.bss.mode, t.bss.use_big = per_call, 1, 1
            got = []
            buf = t.maps["big"].open_ring_buffer(got.append)
            assert buf.backend == backend
            prod.stdin.write("go\n")
            prod.stdin.close()
            while prod.poll() is None:
                buf.poll(10)
            buf.consume()
            # seq counts successful reserves; a full ring ends that call's loop.
            written = t.bss.seq
            assert 0 < written <= calls * per_call
            assert [e.seq for e in got] == list(range(written))
            assert all(e.size in (16, 24, 40) and e.tag == ("" if e.size == 16 else "lcc-tag")
                       for e in got)
    finally:
        if prod.poll() is None:
            prod.kill()
        prod.wait()


# -- read_batch: the same events, as columns ------------------------------------------

def as_list(column) -> list:
    """A batch column as Python values: numpy arrays (the numpy extra) hold char
    arrays as NUL-padded bytes, tuples as str."""
    values = column.tolist() if hasattr(column, "tolist") else list(column)
    return [v.rstrip(b"\0").decode() if isinstance(v, bytes) else v for v in values]


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_read_batch_holds_what_read_returns(tool, mode):
    """Fixed records, records of three sizes (two shorter than the type, zero-filled)
    and discards: the batch's columns hold what read() returns one by one."""
    tool.bss.use_big = 1
    buf = tool.maps["big"].open_ring_buffer()
    fire(tool, 600, mode)
    b = buf.read_batch(timeout=5)
    fire(tool, 600, mode)
    one_by_one = list(buf.events(timeout=0))
    assert len(b) == len(one_by_one) > 0
    assert b.fields == ("seq", "pid", "size", "tag")
    n = len(b)
    # the second round's events are the first's, sequence numbers moved on by n (+ discards)
    shift = one_by_one[0].seq - b["seq"][0]
    assert [e.seq - shift for e in one_by_one] == as_list(b["seq"])
    for f in ("pid", "size", "tag"):
        assert [getattr(e, f) for e in one_by_one] == as_list(b[f]), f
    assert set(as_list(b["pid"])) == {os.getpid()} and n == (400 if mode == 2 else 600)
    assert len(buf.read_batch()) == 0  # nothing left; the default does not wait


def test_read_batch_takes_at_most_max_events_and_keeps_the_rest(tool):
    tool.bss.use_big = 1
    buf = tool.maps["big"].open_ring_buffer()
    fire(tool, 100)
    first = buf.read_batch(max_events=30)
    rest = buf.read_batch(timeout=1)
    assert as_list(first["seq"]) + as_list(rest["seq"]) == list(range(100))
    assert len(first) == 30
