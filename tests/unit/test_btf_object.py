"""BTF read through libbpf from a compiled object: opened, never loaded (no privileges).

Compiles tests/progs/btf_types.bpf.c through lcc's normal compile path
(marker ``toolchain``: skipped without clang, bpftool or kernel BTF; any other
failure to compile, a broken lbc.h say, fails every test here).
"""

from __future__ import annotations

import struct

import pytest

from lcc import BtfError, ClosedError, LccError
from lcc.btf import KIND_STRUCT, Alias, Array, Datasec, Enum, Float, Int, Ptr, Struct
from lcc.codecs import codec
from lcc.spec import ObjectSpec


pytestmark = pytest.mark.toolchain


@pytest.fixture(scope="module")
def obj(compile_prog):
    o = ObjectSpec(compile_prog("btf_types.bpf.c"), name="btf_types")
    yield o
    o.close()


def test_int_and_typedef_chain(obj):
    t = obj.btf.named_type("my_u32_again")
    assert isinstance(t, Alias) and str(t) == "my_u32_again"
    r = t.resolve()
    assert isinstance(r, Int) and (r.size, r.signed) == (4, False)
    assert t.size == 4


def test_struct_layout(obj):
    flat = obj.btf.named_type("struct flat")
    assert isinstance(flat, Struct) and not flat.is_union
    offs = {mb.name: mb.offset for mb in flat.members}
    assert offs["a"] == 0 and offs["b"] == 8 and offs["name"] == 16
    name_t = next(mb.type for mb in flat.members if mb.name == "name")
    assert isinstance(name_t, Array) and name_t.nelems == 8
    grid = next(mb.type for mb in flat.members if mb.name == "grid").resolve()
    assert isinstance(grid, Array) and grid.nelems == 2 and grid.elem.resolve().nelems == 3
    assert isinstance(next(mb.type for mb in flat.members if mb.name == "d").resolve(), Float)
    assert isinstance(next(mb.type for mb in flat.members if mb.name == "ptr").resolve(), Ptr)


def test_self_referencing_struct(obj):
    node = obj.btf.named_type("struct lcc_node")
    nxt = node.members[0].type.resolve()
    assert isinstance(nxt, Ptr) and nxt.target is node  # followed lazily, no recursion
    v = codec(node).decode(struct.pack("<Qi4x", 0xFFFF888000001000, -4))
    assert (v.next, v.val) == (0xFFFF888000001000, -4)


def test_bitfields_and_unions(obj):
    odd = obj.btf.named_type("struct odd")
    bits = {mb.name: (mb.bit_offset, mb.bitfield_size) for mb in odd.members if mb.name}
    assert bits["lo"] == (0, 4) and bits["mid"] == (4, 12) and bits["neg"] == (16, 5)
    un = next(mb.type for mb in odd.members if mb.name == "un").resolve()
    assert isinstance(un, Struct) and un.is_union
    c = codec(odd)
    v = c.decode(c.encode({"lo": 15, "mid": 4095, "neg": -16, "un": {"bytes": [1, 2, 3, 4]},
                           "alias_b": 9, "inner_x": 300, "deep": 7, "color": "GREEN",
                           "big": 0x1234567890, "in": 1, "uc": [250, 251]}))
    assert (v.lo, v.mid, v.neg) == (15, 4095, -16)
    assert v.un.word == 0x04030201
    assert v.alias_a == 9 and v.inner_x == 300 and v.deep == 7  # nested anonymous members
    assert v.color == 2 and v.big == 0x1234567890 and v.in_ == 1 and v.uc == (250, 251)


def test_enums(obj):
    color = obj.btf.enum("color")
    assert isinstance(color, Enum) and color.names == {1: "RED", 2: "GREEN", 40: "BLUE"}
    with pytest.raises(BtfError, match="enum nope"):
        obj.btf.enum("nope")


def test_named_type_lookups(obj):
    assert obj.btf.named_type("struct point").size == 4
    assert obj.btf.find("point", KIND_STRUCT) is obj.btf.named_type("struct point")
    with pytest.raises(BtfError) as ei:
        obj.btf.named_type("struct not_there")
    assert "struct not_there" in str(ei.value) and ei.value.hint


def test_global_sections_from_datasec(obj):
    secs = obj.global_sections()
    assert set(secs) >= {".rodata", ".data", ".bss"}
    assert secs[".bss"].names() == ["g_flat", "g_odd", "g_node", "g_typedef"]
    assert obj.section(".rodata").knob == 3  # initial values readable before load
    assert obj.section(".data").counter == 7
    obj.section(".data").counter = 8
    assert obj.section(".data").counter == 8
    assert isinstance(obj.btf.find(".bss", 15), Datasec)
    assert {(s, n) for s, n, _t in obj.iter_globals()} >= {(".rodata", "knob"), (".bss", "g_odd")}


def test_map_and_program_specs_before_load(obj):
    assert list(obj.programs) == ["uses_types"]
    p = obj.programs["uses_types"]
    assert (p.kind, p.target, p.autoload, p.fd) == ("tracepoint", "syscalls/sys_enter_getppid",
                                                    True, -1)
    assert p.id is None
    spec = obj.map_spec(".bss")
    assert spec.internal and isinstance(spec.value_type, Datasec)
    with pytest.raises(LccError, match="call load"):
        obj.map_fd(".bss")


def test_btf_of_a_closed_object_is_not_read(compile_prog, obj):
    o = ObjectSpec(compile_prog("btf_types.bpf.c"))
    btf = o.btf
    point = btf.named_type("struct point")
    o.close()
    o.close()
    with pytest.raises(ClosedError):
        btf.named_type("struct flat")
    assert codec(point).size == 4  # types already read stay usable
    with pytest.raises(ClosedError):
        o.programs["uses_types"].autoload


# -- .rodata knobs before load: integers go straight into libbpf's image ---------

def test_rodata_integer_knobs_before_load(obj):
    ro = obj.section(".rodata")
    ro.knob = -7
    ro.knob_u8 = 255
    ro.knob_s16 = -32768
    ro.knob_u64 = (1 << 64) - 1
    ro.knob_bool = True
    ro.knob_color = 40
    ro["knob_typedef"] = 0xFFFFFFFF
    assert (ro.knob, ro.knob_u8, ro.knob_s16, ro.knob_u64) == (-7, 255, -32768, (1 << 64) - 1)
    assert ro.knob_bool is True and ro.knob_color == 40 and ro.knob_typedef == 0xFFFFFFFF
    ro.knob_color = "GREEN"  # not an int: the codec maps enum names
    ro.knob_label = "xyz"  # not an integer variable: the codec writes it
    assert ro.knob_color == 2 and ro.knob_label == "xyz"
    ro.knob_point = {"x": -1, "y": 9}
    assert (ro.knob_point.x, ro.knob_point.y) == (-1, 9)
    # neighbours untouched: each write covers its own variable only
    assert ro.knob_u8 == 255 and ro.knob_s16 == -32768


def test_rodata_integer_layouts_from_btf(obj):
    vars_ = obj.btf.datasec_vars(obj.btf.find(".rodata", 15).id)
    layout = {n: obj.btf.int_layout(t) for n, (_off, _size, t) in vars_.items()}
    assert layout["knob"] == (4, True) and layout["knob_u8"] == (1, False)
    assert layout["knob_s16"] == (2, True) and layout["knob_u64"] == (8, False)
    assert layout["knob_bool"] == (1, False)  # bool: written as 0/1, never signed
    assert layout["knob_typedef"] == (4, False)  # through const, volatile and two typedefs
    assert layout["knob_color"] == (4, False)
    assert layout["knob_label"] is None and layout["knob_point"] is None
    assert {n: s for n, (_o, s, _t) in vars_.items()}["knob_u64"] == 8


@pytest.mark.parametrize("name, value, exc, words", [
    ("knob_u8", 256, OverflowError, "knob_u8"),
    ("knob_u8", -1, OverflowError, "cannot hold -1"),
    ("knob_s16", 1 << 16, OverflowError, "knob_s16"),
    ("knob_u64", 1 << 64, OverflowError, "8 bytes"),
    ("knob", "many", ValueError, "knob"),
    ("knob_label", "far too long", ValueError, "knob_label"),
    ("knob_label", "\udc80", ValueError, "knob_label"),  # a UnicodeEncodeError underneath
])
def test_rodata_value_that_does_not_fit_names_the_variable(obj, name, value, exc, words):
    ro = obj.section(".rodata")
    before = getattr(ro, name)
    with pytest.raises(exc, match=words):
        setattr(ro, name, value)
    assert getattr(ro, name) == before  # nothing written


def test_rodata_unknown_name_lists_the_variables(obj):
    with pytest.raises(AttributeError, match=r"no variable 'nope'.*knob_u8"):
        obj.section(".rodata").nope = 1
    with pytest.raises(AttributeError, match="no variable 'nope'"):
        obj.section(".rodata").nope


def test_rodata_set_on_a_closed_object(compile_prog):
    o = ObjectSpec(compile_prog("btf_types.bpf.c"))
    ro = o.section(".rodata")
    ro.knob_u8 = 2  # the variable's layout is now known
    o.close()
    with pytest.raises(ClosedError):
        ro.knob_u8 = 1
