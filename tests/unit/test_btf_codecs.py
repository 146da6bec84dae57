"""BTF codecs on hand-built types: no compiler, no kernel, no privileges."""

from __future__ import annotations

import ctypes as ct
import struct

import pytest

from lcc.btf import KIND_TYPEDEF, Alias, Array, Enum, Float, Int, Member, Struct, iter_members
from lcc.codecs import StructValue, codec, raw_codec, struct_class

U8 = Int(1, "u8", 1)
CHAR = Int(2, "char", 1, signed=True, is_char=True)
U16 = Int(3, "u16", 2)
S16 = Int(4, "s16", 2, signed=True)
U32 = Int(5, "u32", 4)
S32 = Int(6, "s32", 4, signed=True)
U64 = Int(7, "u64", 8)
BOOL = Int(8, "_Bool", 1, is_bool=True)
DOUBLE = Float(9, "double", 8)


def m(name: str, t, byte_off: int, bits: int = 0, bit_off: int | None = None) -> Member:
    return Member(name, t, byte_off * 8 if bit_off is None else bit_off, bits)


POINT = Struct(20, "point", 4, (m("x", S16, 0), m("y", U16, 2)))
FLAT = Struct(21, "flat", 40, (
    m("a", U8, 0), m("b", U64, 8), m("name", Array(22, "", CHAR, 8), 16),
    m("pts", Array(23, "", POINT, 2), 24), m("flag", BOOL, 32),
    m("t", Alias(24, "my_u32", KIND_TYPEDEF, U32), 36),
))
UNION = Struct(30, "", 4, (m("word", U32, 0), m("bytes", Array(31, "", U8, 4), 0)), is_union=True)
COLOR = Enum(32, "color", 4, (("RED", 1), ("BLUE", 40)))
ANON = Struct(33, "", 8, (m("alias_a", U64, 0), m("alias_b", U32, 0)), is_union=True)
ODD = Struct(34, "odd", 32, (
    m("lo", U32, 0, bits=4, bit_off=0), m("mid", U32, 0, bits=12, bit_off=4),
    m("neg", S32, 0, bits=5, bit_off=16), m("un", UNION, 4), m("color", COLOR, 8),
    m("", ANON, 16), m("in", U8, 24), m("tail", U8, 25),
))


def POINT_CLS(x: int, y: int) -> StructValue:  # noqa: N802 - reads like the class
    return tuple.__new__(struct_class(POINT), (x, y))


def test_int_codecs_sign_and_range():
    assert codec(S16).decode(b"\xff\xff") == -1
    assert codec(U16).decode(b"\xff\xff") == 0xFFFF
    assert codec(S32).encode(-2) == struct.pack("<i", -2)
    with pytest.raises(OverflowError):
        codec(U16).encode(1 << 16)
    assert codec(BOOL).decode(b"\x01") is True
    assert codec(DOUBLE).decode(codec(DOUBLE).encode(1.5)) == 1.5


def test_plain_struct_uses_one_precompiled_struct():
    c = codec(FLAT)
    assert c.struct is not None and c.struct.size == 40 == c.size
    raw = struct.pack("<B7xQ8shHhH?3xI", 9, 2**63, b"abc", -1, 2, 3, 4, True, 77)
    v = c.decode(raw)
    assert (v.a, v.b, v.name, v.flag, v.t) == (9, 2**63, "abc", True, 77)
    assert v.pts == (POINT_CLS(-1, 2), POINT_CLS(3, 4))
    assert v.pts[0].x == -1
    assert c.encode(v) == raw                       # decoded values encode back
    assert c.encode(v.to_dict()) == raw             # so do plain dicts


def test_decode_from_any_buffer_at_an_offset():
    c = codec(POINT)
    buf = bytearray(b"\0\0" + struct.pack("<hH", -5, 6))
    assert c.decode(buf, 2) == c.decode(memoryview(bytes(buf))[2:]) == POINT_CLS(-5, 6)


def test_char_arrays_are_strings():
    c = codec(Array(40, "", CHAR, 6))
    assert c.decode(b"hi\0junk") == "hi"
    assert c.decode(b"sixsix") == "sixsix"  # no NUL: all of it
    assert c.decode(b"\xff\xfe\0\0\0\0") == "\ufffd\ufffd"  # not UTF-8: replaced, not raised
    assert c.encode("hi") == b"hi\0\0\0\0"
    assert c.encode(b"by") == b"by\0\0\0\0"
    with pytest.raises(ValueError):
        c.encode("too long!")
    # u8 arrays stay numbers
    assert codec(Array(41, "", U8, 3)).decode(b"\x01\x02\x03") == (1, 2, 3)


def test_bitfields_unions_enums_member_by_member():
    c = codec(ODD)
    assert c.struct is None  # bitfields and unions are not one flat struct
    value = {"lo": 9, "mid": 0xABC, "neg": -3, "un": {"word": 0x04030201}, "color": "BLUE",
             "alias_a": 2**40 + 5, "in": 7, "tail": 1}
    raw = c.encode(value)
    v = c.decode(raw)
    assert (v.lo, v.mid, v.neg) == (9, 0xABC, -3)
    assert v.un.word == 0x04030201 and v.un.bytes == (1, 2, 3, 4)
    assert v.color == 40  # an enum given by name is stored by value
    assert v.alias_a == 2**40 + 5 and v.alias_b == 5  # anonymous union members read as v's own
    assert v.in_ == 7 and v["in_"] == 7  # keywords get a trailing underscore
    assert v["alias_b"] == 5
    d = v.to_dict()
    assert d["alias_a"] == 2**40 + 5 and "_5" not in d
    assert c.encode(v) == raw


def test_missing_fields_stay_zero_and_unknown_ones_are_refused():
    c = codec(FLAT)
    v = c.decode(c.encode({"b": 5}))
    assert (v.a, v.b, v.name, v.pts[1].y) == (0, 5, "", 0)
    with pytest.raises(ValueError, match="no member nme"):
        c.encode({"nme": "typo"})

    class Obj:
        a = 3
        name = "attr"

    v = c.decode(c.encode(Obj()))  # objects with attributes work too
    assert (v.a, v.name) == (3, "attr")


def test_struct_values_are_hashable_keys():
    c = codec(POINT)
    k1, k2 = c.decode(c.encode({"x": 1, "y": 2})), c.decode(c.encode({"x": 1, "y": 2}))
    assert {k1: "v"}[k2] == "v"
    assert isinstance(k1, StructValue) and isinstance(k1, tuple)
    assert repr(k1) == "point(x=1, y=2)"
    with pytest.raises(KeyError):
        k1["z"]


def test_string_at_on_a_decoded_value():
    """pyLCC callbacks do ctypes.string_at(event, size); size may exceed the struct by padding."""
    c = codec(POINT)
    v = c.decode(c.encode({"x": -1, "y": 7}))
    assert ct.string_at(v, 4) == c.encode(v)
    assert ct.string_at(v, 8)[:4] == c.encode(v)  # perf's 8-byte rounding stays in bounds


def test_raw_codec_and_unknown_layouts():
    r = raw_codec(4)
    assert r.decode(b"abcdEF") == b"abcd"
    assert r.encode(b"ab") == b"ab\0\0"
    assert r.encode(1) == (1).to_bytes(4, "little")
    with pytest.raises(ValueError):
        r.encode(b"abcde")


def test_iter_members_flattens_anonymous_members():
    names = [(n, off) for n, _t, off in iter_members(ODD)]
    assert ("alias_a", 16) in names and ("alias_b", 16) in names
    assert ("lo", 0) in names and ("tail", 25) in names
