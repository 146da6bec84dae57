"""kfunc declarations from BTF (lcc_toolchain.kfuncs), on small BTF blobs
built here, and on this kernel's BTF when it has one.  No clang needed."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from lcc_toolchain import kfuncs
from lcc_toolchain.kfuncs import BtfError, append_to, declarations, kfunc_prototypes

HOST_BTF = Path("/sys/kernel/btf/vmlinux")

INT, PTR, STRUCT, ENUM, FWD, TYPEDEF = 1, 2, 4, 6, 7, 8
CONST, FUNC, FUNC_PROTO, DECL_TAG = 10, 12, 13, 17


class BtfBuilder:
    """Writes BTF: add types in id order (the first is id 1), then bytes()."""

    def __init__(self, order: str = "<") -> None:
        self.order = order
        self.strings = bytearray(b"\0")
        self.records: list[bytes] = []

    def _str(self, s: str) -> int:
        if not s:
            return 0
        off = len(self.strings)
        self.strings += s.encode() + b"\0"
        return off

    def _add(self, kind: int, name: str, ref: int, vlen: int = 0, kflag: bool = False,
             tail: bytes = b"") -> int:
        info = (kind << 24) | vlen | (1 << 31 if kflag else 0)
        self.records.append(struct.pack(self.order + "III", self._str(name), info, ref) + tail)
        return len(self.records)

    def int(self, name: str, size: int = 4, signed: bool = True) -> int:
        enc = (1 if signed else 0) << 24 | size * 8
        return self._add(INT, name, size, tail=struct.pack(self.order + "I", enc))

    def ptr(self, to: int) -> int:
        return self._add(PTR, "", to)

    def const(self, to: int) -> int:
        return self._add(CONST, "", to)

    def typedef(self, name: str, to: int) -> int:
        return self._add(TYPEDEF, name, to)

    def struct(self, name: str, size: int = 8) -> int:  # no members needed here
        return self._add(STRUCT, name, size)

    def fwd(self, name: str, union: bool = False) -> int:
        return self._add(FWD, name, 0, kflag=union)

    def enum(self, name: str) -> int:
        return self._add(ENUM, name, 4, vlen=1,
                         tail=struct.pack(self.order + "Ii", self._str("X"), 0))

    def proto(self, ret: int, *params: tuple[str, int]) -> int:
        tail = b"".join(struct.pack(self.order + "II", self._str(n), t) for n, t in params)
        return self._add(FUNC_PROTO, "", ret, vlen=len(params), tail=tail)

    def func(self, name: str, proto: int, kfunc: bool = True) -> int:
        fid = self._add(FUNC, name, proto, vlen=0)
        if kfunc:
            self._add(DECL_TAG, "bpf_kfunc", fid, tail=struct.pack(self.order + "i", -1))
        return fid

    def bytes(self) -> bytes:
        types = b"".join(self.records)
        hdr = struct.pack(self.order + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types),
                          len(self.strings))
        return hdr + types + bytes(self.strings)


def sample(order: str = "<") -> bytes:
    b = BtfBuilder(order)
    i32 = b.int("int")
    u32 = b.typedef("u32", b.typedef("__u32", b.int("unsigned int", signed=False)))
    char = b.int("char", 1)
    task = b.struct("task_struct")
    b.func("bpf_task_from_pid", b.proto(b.ptr(task), ("pid", i32)))
    b.func("bpf_task_release", b.proto(0, ("p", b.ptr(task))))
    b.func("bpf_strlen", b.proto(i32, ("s__ign", b.ptr(b.const(char)))))
    b.func("bpf_const_ptr", b.proto(0, ("p", b.const(b.ptr(char)))))
    cb = b.ptr(b.proto(i32, ("", b.ptr(0)), ("", u32)))
    b.func("bpf_with_callback", b.proto(i32, ("cb", cb), ("flags", u32)))
    b.func("bpf_variadic", b.proto(i32, ("fmt", b.ptr(char)), ("", 0)))
    b.func("bpf_no_args", b.proto(b.ptr(0)))
    b.func("bpf_enum_arg", b.proto(0, ("kind", b.enum("kind")), ("m", b.ptr(b.fwd("mm", True)))))
    b.func("not_a_kfunc", b.proto(i32), kfunc=False)
    b.func("bpf_anon_arg", b.proto(0, ("s", b.struct(""))))          # anonymous: unwritable
    b.func("bpf_keyword_arg", b.proto(0, ("int", i32)))             # name dropped
    return b.bytes()


def test_prototypes_of_tagged_funcs_only():
    got = dict(kfunc_prototypes(sample()))

    assert got["bpf_task_from_pid"] == \
        "extern struct task_struct *bpf_task_from_pid(int pid) __weak __ksym;"
    assert got["bpf_task_release"] == \
        "extern void bpf_task_release(struct task_struct *p) __weak __ksym;"
    assert got["bpf_strlen"] == "extern int bpf_strlen(const char *s__ign) __weak __ksym;"
    assert got["bpf_const_ptr"] == "extern void bpf_const_ptr(char *const p) __weak __ksym;"
    assert got["bpf_with_callback"] == \
        "extern int bpf_with_callback(int (*cb)(void *, u32), u32 flags) __weak __ksym;"
    assert got["bpf_variadic"] == "extern int bpf_variadic(char *fmt, ...) __weak __ksym;"
    assert got["bpf_no_args"] == "extern void *bpf_no_args(void) __weak __ksym;"
    assert got["bpf_enum_arg"] == \
        "extern void bpf_enum_arg(enum kind kind, union mm *m) __weak __ksym;"
    assert got["bpf_keyword_arg"] == "extern void bpf_keyword_arg(int) __weak __ksym;"
    assert "not_a_kfunc" not in got
    assert "bpf_anon_arg" not in got


def test_big_endian_btf_reads_the_same():
    assert kfunc_prototypes(sample(">")) == kfunc_prototypes(sample("<"))


def test_skip_leaves_names_out():
    got = dict(kfunc_prototypes(sample(), skip={"bpf_strlen"}))
    assert "bpf_strlen" not in got and "bpf_task_release" in got


def test_names_bpftool_renames_are_left_out_unless_interchangeable():
    b = BtfBuilder()
    uchar = b.int("unsigned char", 1, signed=False)
    u8 = b.typedef("u8", b.typedef("__u8", uchar))
    u8_again = b.typedef("u8", uchar)          # same integer: either spelling is right
    dup = b.struct("dup")
    b.struct("dup")                            # vmlinux.h calls the second one dup___2
    b.func("bpf_u8", b.proto(0, ("a", u8), ("b", u8_again)))
    b.func("bpf_dup", b.proto(0, ("d", b.ptr(dup))))

    got = dict(kfunc_prototypes(b.bytes()))

    assert got == {"bpf_u8": "extern void bpf_u8(u8 a, u8 b) __weak __ksym;"}


@pytest.mark.parametrize("damage", [
    lambda d: d[:10],                                  # shorter than the header
    lambda d: b"\x00\x00" + d[2:],                     # bad magic
    lambda d: d[:-40],                                 # sections run past the end
    lambda d: d[:24 + 5] + b"\xff" * 7 + d[36:],       # garbage type record
], ids=["short", "magic", "truncated", "garbage"])
def test_malformed_btf_raises(damage):
    with pytest.raises(BtfError):
        kfunc_prototypes(damage(sample()))


def test_type_cycles_do_not_recurse_forever():
    b = BtfBuilder()
    # id 1: a pointer to id 2, id 2: a const of id 1
    b._add(PTR, "", 2)
    b._add(CONST, "", 1)
    b.func("bpf_loop", b.proto(0, ("p", 1)))
    assert kfunc_prototypes(b.bytes()) == []


VMLINUX_TAIL = """\
struct task_struct {
\tint pid;
};

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute pop
#endif

#endif /* __VMLINUX_H__ */
"""
VMLINUX_H = """\
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#ifndef BPF_NO_PRESERVE_ACCESS_INDEX
#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)
#endif

""" + VMLINUX_TAIL


def test_block_goes_before_the_closing_lines():
    block = declarations(sample())
    text = append_to(VMLINUX_H, block)

    chunks = text.split("\n\n")
    assert chunks[0].startswith("#ifndef __VMLINUX_H__")
    assert text.index("struct task_struct {") < text.index(kfuncs.BEGIN)
    assert text.index(kfuncs.END) < text.index("#pragma clang attribute pop")
    assert text.endswith("#endif /* __VMLINUX_H__ */\n")
    # one declaration per paragraph, as bpftool lays vmlinux.h out
    assert "extern void bpf_task_release(struct task_struct *p) __weak __ksym;" in chunks
    # bpftool 7.4+ wrote its own block: nothing is added
    assert append_to(text, block) == text


def test_no_kfuncs_no_block():
    b = BtfBuilder()
    b.func("plain", b.proto(b.int("int")), kfunc=False)
    assert declarations(b.bytes()) == ""
    assert append_to(VMLINUX_H, "") == VMLINUX_H


@pytest.mark.skipif(not HOST_BTF.exists(), reason="this kernel has no BTF")
def test_this_kernels_kfuncs():
    got = dict(kfunc_prototypes(HOST_BTF.read_bytes()))
    if not got:
        pytest.skip("this kernel's BTF tags no kfuncs (pahole < 1.26 or kernel < 6.8)")
    assert got["bpf_task_release"] == \
        "extern void bpf_task_release(struct task_struct *p) __weak __ksym;"
    assert all(text.startswith("extern ") and text.endswith(" __weak __ksym;")
               for text in got.values())
