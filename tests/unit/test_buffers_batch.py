"""RingBuffer.read_batch's decoding (lcc.buffers.batch) on records built by hand: no kernel."""

from __future__ import annotations

import struct

import pytest

from lcc.btf import Array, Int, Member, Struct
from lcc.buffers import batch
from lcc.codecs import codec
from lcc.ringbuf_mmap import record_size

U16, U32, S64 = Int(1, "u16", 2), Int(2, "u32", 4), Int(3, "s64", 8, signed=True)
CHAR = Int(4, "char", 1, signed=True, is_char=True)
EVENT = Struct(10, "event", 40, (
    Member("ts", S64, 0), Member("pid", U32, 64), Member("port", U16, 96),
    Member("comm", Array(11, "", CHAR, 16), 128), Member("v", Array(12, "", U32, 2), 256)))
BODY = struct.Struct("<qIH2x16s2I")  # EVENT's layout


def records(values, length=40):
    """One run of ring records (8-byte header, body, padding) holding ``values``."""
    rsize = record_size(length)
    out = b""
    for v in values:
        body = BODY.pack(*v).ljust(length, b"\0")
        out += struct.pack("<II", length, 0) + body + b"\0" * (rsize - 8 - length)
    return out


VALUES = [(-i, 1000 + i, 80 + i, f"comm{i}".encode(), i, 2 * i) for i in range(300)]


def per_event(values):
    c = codec(EVENT)
    return [c.decode(BODY.pack(*v)) for v in values]


def test_columns_hold_what_the_per_event_path_decodes():
    runs = [(records(VALUES[:100]), 100, 40), (records(VALUES[100:]), 200, 40)]
    b = batch.decode_runs(runs, codec(EVENT), use_numpy=False)
    want = per_event(VALUES)
    assert len(b) == 300 and b.fields == ("ts", "pid", "port", "comm", "v")
    assert list(b) == [tuple(e) for e in want]
    assert b["pid"] == tuple(e.pid for e in want)
    assert b["comm"][7] == "comm7" and b["v"][3] == (3, 6)
    with pytest.raises(KeyError, match="columns: ts, pid"):
        b["nope"]


def test_longer_and_shorter_records_decode_as_single_events_do():
    longer = records(VALUES[:3], length=48)  # the program sent more than the type
    b = batch.decode_runs([(longer, 3, 48)], codec(EVENT), use_numpy=False)
    assert b["ts"] == (0, -1, -2)
    short = struct.pack("<II", 12, 0) + BODY.pack(*VALUES[5])[:12] + b"\0" * 4
    b = batch.decode_runs([(short, 1, 12)], codec(EVENT), use_numpy=False)
    assert (b["ts"][0], b["pid"][0], b["port"][0]) == (-5, 1005, 0)  # zero-filled


def test_raw_and_empty_batches():
    b = batch.decode_runs([(records(VALUES[:2]), 2, 40)], codec(EVENT), raw=True)
    assert b.fields == ("data",) and b["data"][1] == BODY.pack(*VALUES[1])
    e = batch.decode_runs([], codec(EVENT))
    assert len(e) == 0 and e["pid"] == ()


def test_numpy_columns_match_the_tuples():
    np = pytest.importorskip("numpy")
    runs = [(records(VALUES[:100]), 100, 40), (records(VALUES[100:], length=48), 200, 48)]
    b = batch.decode_runs(runs, codec(EVENT), use_numpy=True)
    t = batch.decode_runs(runs, codec(EVENT), use_numpy=False)
    assert b.numpy and len(b) == 300
    for f in ("ts", "pid", "port"):
        assert isinstance(b[f], np.ndarray)
        assert b[f].tolist() == list(t[f])
    assert [c.rstrip(b"\0").decode() for c in b["comm"].tolist()] == list(t["comm"])
    assert [tuple(x) for x in b["v"].tolist()] == list(t["v"])


def test_numpy_required_but_not_viewable_says_why():
    pytest.importorskip("numpy")
    with_struct = Struct(20, "outer", 48, (Member("inner", EVENT, 0),))
    c = codec(with_struct)
    run = struct.pack("<II", 48, 0) + b"\0" * 48
    with pytest.raises(TypeError, match="use_numpy=False"):
        batch.decode_runs([(run, 1, 48)], c, use_numpy=True)
    assert len(batch.decode_runs([(run, 1, 48)], c)) == 1  # the default falls back
