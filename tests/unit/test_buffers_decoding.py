"""The event path's decoding: one codec per event type, one flat plan, one pad helper,
and the one-way layering of lcc.buffers below lcc.maps."""

from __future__ import annotations

import ast
import struct

import pytest
from lcc import codecs
from lcc.btf import Array, Int, Member, Struct
from lcc.codecs import codec
from lcc.ringbuf_mmap import EventDelivery, RingReader, record_size

from test_buffers_ringbuf import EV, NAMED, UNION, FakeRing, ev
from test_layering import lcc_modules, module_imports


U8 = Int(20, "u8", 1)
# struct nested { struct ev e; u8 tail[8]; }: a flat plan that needs generated glue
NESTED = Struct(21, "nested", 24, (Member("e", EV, 0), Member("tail", Array(22, "", U8, 8), 128)))


@pytest.fixture
def builders(monkeypatch):
    """Counts the codec builders made (one per codec compiled from BTF)."""
    made: list[object] = []
    real = codecs._Builder.__init__

    def counting(self):
        made.append(self)
        real(self)

    monkeypatch.setattr(codecs._Builder, "__init__", counting)
    return made


@pytest.mark.parametrize("ctype", [EV, NAMED, NESTED])
def test_a_codec_is_built_once_per_event_type_and_its_plan_is_shared(ctype, builders):
    keep = c = codec(ctype)
    assert len(builders) == 1
    assert c.flat is not None
    fmt, build = c.flat
    assert struct.calcsize("=" + fmt) == c.size
    r = FakeRing(4096)
    full = bytes(range(c.size))
    for _ in range(3):
        r.submit(full)
    r.submit(full[:5])  # a short record
    got: list = []
    # Two deliveries, a second map event type lookup, records of two sizes:
    # all of them use the one codec and its plan.
    for d in (EventDelivery(got.append, codec(ctype)), EventDelivery(got.append, c)):
        r.reader.drain(d)
        for _ in range(2):
            r.submit(full)
    assert codec(ctype) is keep
    assert len(builders) == 1
    assert got[0] == c.decode(full, 0) == build(struct.unpack("=" + fmt, full))
    assert got[3] == c.decode(full[:5] + bytes(c.size - 5), 0)


def test_member_by_member_codecs_have_no_flat_plan():
    assert codec(UNION).flat is None


def test_decode_record_pads_short_records_and_decodes_the_head_of_long_ones():
    c = codec(EV)
    assert c.decode_record(ev(9, 2, 3)) == c.decode(ev(9, 2, 3), 0)
    short = c.decode_record(struct.pack("=Q", 5))
    assert (short.seq, short.pid, short.val) == (5, 0, 0)
    long = c.decode_record(memoryview(ev(6, 1, 2) + b"trailing"))
    assert (long.seq, long.pid, long.val) == (6, 1, 2)
    assert codec(UNION).decode_record(b"\x02").a == 2  # member by member too
    assert c.decode_record(b"") == c.decode(bytes(16), 0)


def test_every_short_record_path_uses_the_one_pad_helper(monkeypatch):
    calls: list[int] = []
    real = codecs.Codec.decode_record

    def spy(self, data):
        calls.append(len(data))
        return real(self, data)

    monkeypatch.setattr(codecs.Codec, "decode_record", spy)
    r = FakeRing(1024)
    r.submit(struct.pack("=Q", 1))
    got: list = []
    r.reader.drain(EventDelivery(got.append, codec(EV)))
    assert calls == [8] and got[0].seq == 1


def test_drain_stops_after_limit_records_and_the_rest_wait():
    r = FakeRing(4096)
    for i in range(10):
        r.submit(ev(i))
    r.submit(b"x" * 40)  # a run of another size
    got: list = []
    d = EventDelivery(got.append, codec(EV))
    assert r.reader.drain(d, limit=3) == 3
    assert r.consumer_pos == 3 * record_size(16)
    assert r.reader.drain(d, limit=7) == 7
    assert r.reader.drain(d, limit=7) == 1
    assert [e.seq for e in got[:10]] == list(range(10))
    assert r.reader.drain(d) == 0


def test_a_deque_collects_decoded_events_at_c_speed():
    from collections import deque
    r = FakeRing(1024)
    for i in range(5):
        r.submit(ev(i))
    q: deque = deque()
    assert r.reader.drain(EventDelivery(q.append, codec(EV)), limit=4) == 4
    assert [e.seq for e in q] == [0, 1, 2, 3]
    assert isinstance(r.reader, RingReader)


def test_the_event_path_has_no_import_cycle_and_buffers_never_import_maps():
    mods = lcc_modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in module_imports(path, package) if m in mods}
    for name, path in mods.items():
        if name.startswith(("lcc.buffers", "lcc.ringbuf_mmap", "lcc.codecs")):
            # not at all: neither for typing nor inside a function
            named = {a.name for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
            named |= {node.module or "" for node in ast.walk(ast.parse(path.read_text()))
                      if isinstance(node, ast.ImportFrom)}
            assert not any("maps" in n.split(".") for n in named), name
    # No cycle among the event path's modules.
    path_mods = {n for n in graph if n.startswith(("lcc.maps", "lcc.buffers"))
                 or n in ("lcc.codecs", "lcc.ringbuf_mmap")}

    def visit(n: str, stack: list[str]) -> None:
        assert n not in stack, " -> ".join(stack + [n])
        for m in graph[n] & path_mods:
            visit(m, stack + [n])

    for n in path_mods:
        visit(n, [])


def test_every_map_name_is_still_importable_from_lcc_maps():
    import lcc.maps
    from lcc.maps import (BPF_EXIST, BPF_NOEXIST, MAP_CLASSES, ArrayMap, EventMap,  # noqa: F401
                          HashMap, KeyValueMap, LpmTrieMap, LruHashMap, LruPerCpuHashMap, Map,
                          PerCpuArrayMap, PerCpuHashMap, PerCpuMixin, PerfEventArrayMap,
                          QueueMap, RingBufMap, StackMap, StackTraceMap, _sum_values, map_for)
    assert MAP_CLASSES[27] is RingBufMap and MAP_CLASSES[1] is HashMap
    assert all(hasattr(lcc.maps, n) for n in lcc.maps.__all__)
