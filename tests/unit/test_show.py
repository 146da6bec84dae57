"""lcc.show without a kernel: how values are written."""

from __future__ import annotations

import pytest

from lcc import show


def test_format_and_plain_values():
    assert show.format_value(5) == "5"
    assert show.format_value("bash") == "bash"
    assert show.format_value("two words") == '"two words"'
    assert show.format_value((1, 2)) == "[1, 2]"
    assert show.format_value(b"\x01\xff") == "01ff"
    assert show.format_value({"a": 1, "b": "x"}) == "{a=1 b=x}"
    assert show.plain({"k": (1, b"\x00")}) == {"k": [1, "00"]}


def test_unit_from_map_name():
    assert show._unit_of("lat_us") == "usecs"
    assert show._unit_of("hist_ns") == "nsecs"
    assert show._unit_of("ms_hist") == "msecs"
    assert show._unit_of("slots") == "value"
    assert show._unit_of("buses") == "value"


def test_per_cpu_copies_are_summed():
    assert show._sum_percpu([1, 2, 3]) == 6
    assert show._sum_percpu([(1, 2), (3, 4)]) == (4, 6)
    assert show._sum_percpu(["", "bash", ""]) == "bash"  # a name: the first one set
    assert show._sum_percpu([]) == 0


# -- event printers: the %-format path and the general path write the same ------------

def _event_values():
    """Decoded events of a flat struct (ints and a string) and of one with an array."""
    import struct as st

    from lcc.btf import Array, Int, Member, Struct
    from lcc.codecs import codec

    u32, s64 = Int(1, "u32", 4), Int(2, "s64", 8, signed=True)
    char = Int(3, "char", 1, signed=True, is_char=True)
    flat = Struct(10, "ev", 32, (Member("pid", u32, 0), Member("delta", s64, 64),
                                 Member("comm", Array(11, "", char, 16), 128)))
    arr = Struct(12, "ev2", 16, (Member("pid", u32, 0), Member("v", Array(13, "", u32, 3), 32)))
    fc, ac = codec(flat), codec(arr)
    flats = [fc.decode(st.pack("<I4xq16s", pid, delta, comm))
             for pid, delta, comm in ((1, -5, b"bash"), (2**32 - 1, 2**62, b'q"uo\\te\x01'),
                                      (7, 0, b"two words"), (8, 1, b""))]
    arrays = [ac.decode(st.pack("<I3I", 3, 1, 2, 3))]
    return flats, arrays


class _Out:
    def __init__(self):
        self.parts = []
        self.write = self.parts.append

    def text(self):
        return "".join(self.parts)


def _printed(events, json_out, fast):
    out = _Out()
    stacks = show._Stacks.__new__(show._Stacks)
    stacks._maps = []  # a tool without stack maps
    pr = show._EventPrinter("events", True, stacks, out, json_out)
    if not fast:
        pr._fast = False  # the general path, as before the %-format
    for e in events:
        pr(e)
    return out.text(), pr


@pytest.mark.parametrize("json_out", [True, False])
def test_event_printer_fast_path_writes_what_the_general_path_does(json_out):
    flats, _ = _event_values()
    fast, pr = _printed(flats, json_out, fast=True)
    slow, _ = _printed(flats, json_out, fast=False)
    assert pr._fast  # the %-format was used
    assert fast == slow
    assert fast.count("\n") == len(flats)
    if json_out:
        import json
        assert [json.loads(ln)["event"]["comm"] for ln in fast.splitlines()] == \
            ["bash", 'q"uo\\te\x01', "two words", ""]


def test_event_printer_keeps_the_general_path_for_other_members():
    _, arrays = _event_values()
    text, pr = _printed(arrays, True, fast=True)
    assert pr._fast is False
    assert text == '{"map": "events", "event": {"pid": 3, "v": [1, 2, 3]}}\n'
