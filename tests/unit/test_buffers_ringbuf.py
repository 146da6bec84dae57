"""lcc.ringbuf_mmap over a fake ring: header parsing, runs, wrap-around, errors.

The fake lays records out as the kernel does (8-byte header, length rounded
up to 8, data mapped twice) in plain bytearrays, so no privileges are needed.
"""

from __future__ import annotations

import struct

import pytest
from lcc.btf import Array, Int, Member, Struct
from lcc.codecs import codec
from lcc.ringbuf_mmap import (
    BUSY,
    DISCARD,
    MAX_RUN,
    EventDelivery,
    RingReader,
    record_size,
)

U32 = Int(1, "u32", 4)
U64 = Int(2, "u64", 8)
CHAR = Int(3, "char", 1, signed=True, is_char=True)
# struct ev { u64 seq; u32 pid; u32 val; }  (16 bytes)
EV = Struct(10, "ev", 16, (Member("seq", U64, 0), Member("pid", U32, 64), Member("val", U32, 96)))
# struct named { u32 id; char comm[12]; }  (16 bytes: a char array and the generated decoder)
NAMED = Struct(11, "named", 16, (Member("id", U32, 0), Member("comm", Array(12, "", CHAR, 12), 32)))
# union u { u32 a; u64 b; }  (decoded member by member)
UNION = Struct(12, "u", 8, (Member("a", U32, 0), Member("b", U64, 0)), is_union=True)


class FakeRing:
    """A ring buffer's three pages as bytearrays, written the way the kernel writes them."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.cons = bytearray(8)
        self.prod = bytearray(8)
        self.data = bytearray(2 * size)
        self.reader = RingReader(memoryview(self.cons), memoryview(self.prod),
                                 memoryview(self.data), size)

    @property
    def producer_pos(self) -> int:
        return struct.unpack("=Q", self.prod)[0]

    @property
    def consumer_pos(self) -> int:
        return struct.unpack("=Q", self.cons)[0]

    def _put(self, pos: int, raw: bytes) -> None:
        # Both copies of the data pages see every byte, as with the double mapping.
        for j, b in enumerate(raw):
            phys = (pos + j) & (self.size - 1)
            self.data[phys] = b
            self.data[phys + self.size] = b

    def reserve(self, payload: bytes) -> int:
        """Reserve and fill a record (still BUSY); returns its position."""
        pos = self.producer_pos
        rsize = record_size(len(payload))
        assert pos + rsize - self.consumer_pos <= self.size - 8, "fake ring full"
        self._put(pos, struct.pack("=II", len(payload) | BUSY, 0) + payload)
        self.prod[:] = struct.pack("=Q", pos + rsize)
        return pos

    def commit(self, pos: int, discard: bool = False) -> None:
        length = struct.unpack("=I", self._get(pos, 4))[0] & ~BUSY
        self._put(pos, struct.pack("=I", length | (DISCARD if discard else 0)))

    def _get(self, pos: int, n: int) -> bytes:
        phys = pos & (self.size - 1)
        return bytes(self.data[phys:phys + n])

    def submit(self, payload: bytes, discard: bool = False) -> int:
        pos = self.reserve(payload)
        self.commit(pos, discard)
        return pos


def ev(seq: int, pid: int = 7, val: int = 0) -> bytes:
    return struct.pack("=QII", seq, pid, val)


def collect(c=EV, **kw):
    got: list = []
    return got, EventDelivery(got.append, codec(c) if c is not None else None, **kw)


def test_record_size_rounds_header_and_data_to_eight():
    assert record_size(0) == 8
    assert record_size(1) == 16
    assert record_size(8) == 16
    assert record_size(16) == 24
    assert record_size(17 | BUSY) == 32  # flag bits are not length


def test_reader_rejects_a_size_that_is_not_a_power_of_two():
    with pytest.raises(ValueError):
        RingReader(memoryview(bytearray(8)), memoryview(bytearray(8)),
                   memoryview(bytearray(96)), 48)
    with pytest.raises(ValueError):  # data not mapped twice
        RingReader(memoryview(bytearray(8)), memoryview(bytearray(8)),
                   memoryview(bytearray(64)), 64)


def test_equal_records_arrive_decoded_in_order_and_consumer_pos_moves():
    r = FakeRing(1024)
    for i in range(10):
        r.submit(ev(i, val=i * 3))
    got, d = collect()
    assert r.reader.drain(d) == 10
    assert [(e.seq, e.pid, e.val) for e in got] == [(i, 7, i * 3) for i in range(10)]
    assert type(got[0]) is codec(EV).cls
    assert r.consumer_pos == r.producer_pos == 10 * 24
    assert r.reader.drain(d) == 0


def test_records_that_wrap_past_the_end_of_the_ring_read_whole():
    r = FakeRing(128)
    got, d = collect()
    seq = 0
    # 24-byte records in a 128-byte ring: positions cross the end at varying offsets.
    for _ in range(20):
        for _ in range(3):
            r.submit(ev(seq, val=0xABCD0000 + seq))
            seq += 1
        r.reader.drain(d)
    assert [e.seq for e in got] == list(range(seq))
    assert all(e.val == 0xABCD0000 + e.seq for e in got)
    assert r.consumer_pos == seq * 24


def test_a_busy_record_stops_the_drain_until_it_is_committed():
    r = FakeRing(1024)
    r.submit(ev(0))
    busy = r.reserve(ev(1))
    r.submit(ev(2))  # committed, but after a record still being written
    got, d = collect()
    assert r.reader.drain(d) == 1
    assert r.consumer_pos == busy
    r.commit(busy)
    assert r.reader.drain(d) == 2
    assert [e.seq for e in got] == [0, 1, 2]


def test_discarded_records_are_skipped():
    r = FakeRing(1024)
    r.submit(ev(0))
    r.submit(ev(99), discard=True)
    r.submit(b"x" * 40, discard=True)
    r.submit(ev(1))
    got, d = collect()
    assert r.reader.drain(d) == 2
    assert [e.seq for e in got] == [0, 1]
    assert r.consumer_pos == r.producer_pos


def test_a_header_mismatch_inside_a_run_splits_it():
    r = FakeRing(4096)
    sizes = [16] * 5 + [40] + [16] * 7 + [24, 24] + [16] * 3
    for i, n in enumerate(sizes):
        r.submit(struct.pack("=QII", i, n, 0) + bytes(n - 16))
    got: list = []
    sizes_seen: list[int] = []
    d2 = EventDelivery(lambda ctx, e, size: (got.append(e), sizes_seen.append(size)),
                       codec(EV), bcc_style=True)
    assert r.reader.drain(d2) == len(sizes)
    assert [e.seq for e in got] == list(range(len(sizes)))
    assert sizes_seen == sizes
    assert [e.pid for e in got] == sizes


def test_runs_longer_than_max_run_are_delivered_whole():
    n = MAX_RUN + 100
    r = FakeRing(1 << 17)  # 24 bytes a record
    for i in range(n):
        r.submit(ev(i))
    got, d = collect()
    assert r.reader.drain(d) == n
    assert [e.seq for e in got] == list(range(n))


def test_short_records_are_zero_filled_and_long_ones_decode_their_head():
    r = FakeRing(1024)
    r.submit(struct.pack("=Q", 5))          # 8 of 16 bytes
    r.submit(ev(6, 1, 2) + b"trailing")     # 24 of 16 bytes
    got, d = collect()
    assert r.reader.drain(d) == 2
    assert (got[0].seq, got[0].pid, got[0].val) == (5, 0, 0)
    assert (got[1].seq, got[1].pid, got[1].val) == (6, 1, 2)


def test_raw_delivery_gives_the_record_bytes():
    r = FakeRing(1024)
    r.submit(b"abc")
    r.submit(ev(1))
    got, d = collect(raw=True)
    assert r.reader.drain(d) == 2
    assert got == [b"abc", ev(1)]
    got2, d2 = collect(c=None)  # no event type: bytes too
    r.submit(b"hello")
    assert r.reader.drain(d2) == 1
    assert got2 == [b"hello"]


def test_char_arrays_and_unions_decode_like_the_codec():
    r = FakeRing(1024)
    payload = struct.pack("=I12s", 42, b"python\0xyz")
    r.submit(payload)
    got, d = collect(NAMED)
    r.reader.drain(d)
    assert got == [codec(NAMED).decode(payload, 0)]
    assert got[0].comm == "python" and got[0].id == 42

    r2 = FakeRing(1024)
    upay = struct.pack("=Q", 0x1_0000_0002)
    r2.submit(upay)
    r2.submit(upay)
    got2, d2 = collect(UNION)
    assert r2.reader.drain(d2) == 2
    assert got2 == [codec(UNION).decode(upay, 0)] * 2
    assert (got2[0].a, got2[0].b) == (2, 0x1_0000_0002)


class Boom(Exception):
    pass


@pytest.mark.parametrize("ctype,make,key", [
    (EV, ev, lambda e: e.seq),                                        # event class built in C
    (NAMED, lambda i: struct.pack("=I12s", i, b"n"), lambda e: e.id),  # generated decoder
])
def test_a_callback_exception_stops_mid_run_and_the_rest_comes_next_time(ctype, make, key):
    r = FakeRing(1024)
    for i in range(10):
        r.submit(make(i))
    seen: list = []

    def cb(e):
        seen.append(key(e))
        if len(seen) == 4:
            raise Boom("fourth")

    d = EventDelivery(cb, codec(ctype))
    with pytest.raises(Boom, match="fourth"):
        r.reader.drain(d)
    assert seen == [0, 1, 2, 3]
    assert r.consumer_pos == 4 * 24  # the failing record counts as delivered
    assert r.reader.delivered == 4
    assert r.reader.drain(d) == 6
    assert seen == list(range(10))


def test_a_callback_exception_with_the_member_by_member_codec():
    r = FakeRing(1024)
    for i in range(5):
        r.submit(struct.pack("=Q", i))
    seen: list = []

    def cb(e):
        seen.append(e.b)
        if e.b == 1:
            raise Boom()

    d = EventDelivery(cb, codec(UNION))
    with pytest.raises(Boom):
        r.reader.drain(d)
    assert r.consumer_pos == 2 * 16
    assert r.reader.drain(d) == 3
    assert seen == [0, 1, 2, 3, 4]


def test_one_drain_stops_after_a_ring_of_bytes_when_the_producer_keeps_up():
    r = FakeRing(256)
    for i in range(4):
        r.submit(ev(i))
    got: list = []

    def cb(e):
        got.append(e)
        r.submit(ev(e.seq + 4))  # the producer never pauses

    n = r.reader.drain(EventDelivery(cb, codec(EV)))
    assert 256 // 24 <= n <= 256 // 24 + MAX_RUN
    assert [e.seq for e in got] == list(range(n))
