"""``extern`` declarations of a kernel's kfuncs, read from its BTF.

A kfunc is a kernel function BPF programs may call (``bpf_task_from_pid``,
``bpf_cpumask_create``, ...).  Calling one needs a declaration
``extern <prototype> __weak __ksym;``, which newer bpftool releases write at
the end of vmlinux.h; older ones (Debian bookworm has 7.1) write none.
``declarations(btf_bytes)`` makes the same block from the BTF itself: the
kernel tags each kfunc's FUNC with the decl tag ``bpf_kfunc`` (pahole 1.26+,
kernels 6.8+), and the FUNC_PROTO gives its prototype.  ``append_to(header,
btf_bytes)`` puts the block into bpftool's vmlinux.h before its closing lines.

The block is guarded as bpftool guards it: a program that declares kfuncs
its own way defines ``BPF_NO_KFUNC_PROTOTYPES`` before including vmlinux.h.
Each declaration is ``__weak``, so ``bpf_ksym_exists(f)`` works and a
program that does not call a kfunc never depends on it.

The BTF may be an upload from anyone: this parser reads it with bounds
checks, follows type chains to a fixed depth, and leaves out (rather than
guesses at) any kfunc whose prototype it cannot write: an anonymous type, a
name several BTF types share (bpftool renames those), a malformed record.
"""

from __future__ import annotations

import keyword
import re
import struct
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["BEGIN", "END", "BtfError", "append_to", "declarations", "kfunc_prototypes"]

#: First and last lines of the block (``prune`` recognises the block by them).
BEGIN = "#ifndef BPF_NO_KFUNC_PROTOTYPES"
END = "#endif /* BPF_NO_KFUNC_PROTOTYPES */"

_MAGIC = 0xEB9F
_HEADER = struct.Struct("HBBIIIII")  # magic, version, flags, hdr_len, type off/len, str off/len
_MAX_DEPTH = 32

# BTF kinds (include/uapi/linux/btf.h)
_INT, _PTR, _ARRAY, _STRUCT, _UNION, _ENUM, _FWD, _TYPEDEF = 1, 2, 3, 4, 5, 6, 7, 8
_VOLATILE, _CONST, _RESTRICT, _FUNC, _FUNC_PROTO, _VAR, _DATASEC = 9, 10, 11, 12, 13, 14, 15
_FLOAT, _DECL_TAG, _TYPE_TAG, _ENUM64 = 16, 17, 18, 19

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_C_KEYWORDS = frozenset("""auto break case char const continue default do double else enum
    extern float for goto if inline int long register restrict return short signed sizeof
    static struct switch typedef union unsigned void volatile while _Bool _Complex
    _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn _Static_assert
    _Thread_local""".split())


class BtfError(ValueError):
    """The BTF is malformed (truncated, bad magic, references out of range)."""


class _Type(NamedTuple):  # a tuple: a kernel's BTF has over 100,000 of them
    kind: int
    name: str
    kind_flag: bool
    ref: int                         # type (PTR, TYPEDEF, FUNC, ...) or 0
    extra: tuple = ()                # FUNC_PROTO: (offset, count) of its params; ARRAY: (elem, n);
    #                                  FUNC: (name offset,), its name left "" (``_Btf.func_name``)


class _Btf:
    """The types of one BTF blob (base BTF only; split BTF is not needed here)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise BtfError("BTF is shorter than its header")
        order = "<" if struct.unpack_from("<H", data)[0] == _MAGIC else ">"
        hdr = struct.Struct(order + "HBBIIIII")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = \
            hdr.unpack_from(data)
        if magic != _MAGIC:
            raise BtfError("not BTF (bad magic)")
        types_at, strs_at = hdr_len + type_off, hdr_len + str_off
        if types_at + type_len > len(data) or strs_at + str_len > len(data):
            raise BtfError("BTF sections run past its end")
        self._strs = data[strs_at:strs_at + str_len]
        self._names: dict[int, str] = {0: ""}
        self._data, self._pair = data, struct.Struct(order + "II")
        self.types: list[_Type | None] = [None]  # id 0 is void
        self.tags: list[tuple[str, int, int]] = []  # (tag, type id, component)
        u32 = struct.Struct(order + "I")
        triple = struct.Struct(order + "III")
        pos, end = types_at, types_at + type_len
        new, append, name_of, names = tuple.__new__, self.types.append, self._str, self._names
        try:
            while pos < end:
                name_off, info, ref = triple.unpack_from(data, pos)
                pos += 12
                kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, bool(info >> 31)
                extra: tuple = ()
                if kind == _FUNC:  # tens of thousands; a name is read only for a kfunc
                    append(new(_Type, (kind, "", kflag, ref, (name_off,))))
                    continue
                name = names.get(name_off)
                if name is None:
                    name = name_of(name_off)
                if kind == _INT or kind == _VAR:
                    pos += 4
                elif kind == _ARRAY:
                    elem, _index, n = triple.unpack_from(data, pos)
                    extra = (elem, n)
                    pos += 12
                elif kind in (_STRUCT, _UNION, _DATASEC, _ENUM64):
                    pos += 12 * vlen
                elif kind == _ENUM:
                    pos += 8 * vlen
                elif kind == _FUNC_PROTO:  # read by params(): few protos are a kfunc's
                    if pos + 8 * vlen > end:
                        raise BtfError("BTF type section is truncated")
                    extra = (pos, vlen)
                    pos += 8 * vlen
                elif kind == _DECL_TAG:
                    (component,) = u32.unpack_from(data, pos)
                    pos += 4
                    self.tags.append((name, ref, component))
                elif kind not in (_PTR, _FWD, _TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _FUNC,
                                  _FLOAT, _TYPE_TAG):
                    raise BtfError(f"unknown BTF kind {kind}")
                append(new(_Type, (kind, name, kflag, ref, extra)))
        except struct.error:
            raise BtfError("BTF type section is truncated") from None
        if pos != end:
            raise BtfError("BTF type section is truncated")

    def _str(self, off: int) -> str:
        name = self._names.get(off)
        if name is None:
            end = self._strs.find(b"\0", off)
            if off >= len(self._strs) or end < 0:
                raise BtfError("BTF string offset out of range")
            name = self._names[off] = self._strs[off:end].decode("utf-8", errors="replace")
        return name

    def func_name(self, func: _Type) -> str:
        """The name of a FUNC (not decoded while reading the types)."""
        return self._str(func.extra[0])

    def params(self, proto: _Type) -> tuple[tuple[str, int], ...]:
        """((name, type id), ...) of a FUNC_PROTO."""
        pos, vlen = proto.extra
        return tuple((self._str(n), t) for n, t in
                     (self._pair.unpack_from(self._data, pos + 8 * i) for i in range(vlen)))

    def get(self, tid: int) -> _Type:
        if not 0 < tid < len(self.types):
            raise BtfError(f"BTF type id {tid} out of range")
        return self.types[tid]


class _Unwritable(Exception):
    """This prototype cannot be written as C that means the same."""


class _Writer:
    """C declarators for BTF types, as bpftool's btf_dump writes them."""

    _NAMED = {_STRUCT: "struct", _UNION: "union", _ENUM: "enum", _ENUM64: "enum"}

    def __init__(self, btf: _Btf) -> None:
        self.btf = btf
        # Names bpftool had to rename in vmlinux.h (two types, one name).
        seen: dict[tuple[str, str], list[_Type]] = {}
        spaces = self._SPACES
        for t in btf.types[1:]:
            space = spaces.get(t.kind)
            if space is not None and t.name:
                seen.setdefault((space, t.name), []).append(t)
        # Typedefs of one integer type under one name (u8 twice: once for
        # __u8, once for unsigned char) are interchangeable in a prototype.
        self._shared: set[tuple[str, str]] = set()
        for key, ts in seen.items():
            if len(ts) < 2:
                continue
            ints = {self._integer(t) for t in ts}
            if key[0] != "typedef" or None in ints or len(ints) != 1:
                self._shared.add(key)

    def _integer(self, t: _Type) -> str | None:
        """The integer or float type a typedef stands for, else None."""
        for _ in range(_MAX_DEPTH):
            if t.kind in (_INT, _FLOAT):
                return t.name
            if t.kind not in (_TYPEDEF, _CONST, _VOLATILE) or not 0 < t.ref < len(self.btf.types):
                return None
            t = self.btf.types[t.ref]
        return None

    #: The name spaces of C: two types of one kind of space may not share a name.
    _SPACES = {_STRUCT: "record", _UNION: "record", _FWD: "record", _ENUM: "enum",
               _ENUM64: "enum", _TYPEDEF: "typedef"}

    @classmethod
    def _space(cls, t: _Type) -> str | None:
        return cls._SPACES.get(t.kind)

    def _base(self, t: _Type) -> str:
        """The name a type is spelled with; raises for anonymous or ambiguous ones."""
        if t.kind in (_INT, _FLOAT):
            return t.name
        if not t.name or not _IDENT.fullmatch(t.name):
            raise _Unwritable
        if (self._space(t), t.name) in self._shared:
            raise _Unwritable
        if t.kind == _FWD:
            return f"{'union' if t.kind_flag else 'struct'} {t.name}"
        if t.kind in self._NAMED:
            return f"{self._NAMED[t.kind]} {t.name}"
        return t.name  # typedef

    def decl(self, tid: int, declarator: str, depth: int = 0) -> str:
        """``<type> <declarator>`` for type ``tid`` (0 is void)."""
        if depth > _MAX_DEPTH:
            raise _Unwritable
        if tid == 0:
            return _join("void", declarator)
        t = self.btf.get(tid)
        if t.kind == _PTR:
            inner = "*" + declarator
            target = self.btf.get(t.ref) if t.ref else None
            if target is not None and target.kind in (_ARRAY, _FUNC_PROTO):
                inner = f"({inner})"
            return self.decl(t.ref, inner, depth + 1)
        if t.kind in (_CONST, _VOLATILE, _RESTRICT):
            qual = {_CONST: "const", _VOLATILE: "volatile", _RESTRICT: "restrict"}[t.kind]
            target = self.btf.get(t.ref) if t.ref else None
            if target is not None and target.kind == _PTR:  # the pointer itself is qualified
                return self.decl(t.ref, _join(qual, declarator), depth + 1)
            if target is not None and target.kind in (_ARRAY, _FUNC_PROTO):
                raise _Unwritable
            return f"{qual} {self.decl(t.ref, declarator, depth + 1)}"
        if t.kind == _TYPE_TAG:
            return self.decl(t.ref, declarator, depth + 1)
        if t.kind == _ARRAY:
            elem, n = t.extra
            return self.decl(elem, f"{declarator}[{n}]", depth + 1)
        if t.kind == _FUNC_PROTO:
            return self.decl(t.ref, f"{declarator}({self.params(t, depth)})", depth + 1)
        if t.kind in (_INT, _FLOAT, _STRUCT, _UNION, _ENUM, _ENUM64, _FWD, _TYPEDEF):
            return _join(self._base(t), declarator)
        raise _Unwritable

    def params(self, proto: _Type, depth: int) -> str:
        args = list(self.btf.params(proto))
        if not args:
            return "void"
        out = []
        for i, (name, tid) in enumerate(args):
            if tid == 0 and not name:
                if i != len(args) - 1:
                    raise _Unwritable
                out.append("...")
                continue
            if not _IDENT.fullmatch(name) or name in _C_KEYWORDS or keyword.iskeyword(name):
                name = ""
            out.append(self.decl(tid, name, depth + 1))
        return ", ".join(out)


def _join(base: str, declarator: str) -> str:
    return f"{base} {declarator}" if declarator else base


def kfunc_prototypes(btf_bytes: bytes, *, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(name, "extern ... __weak __ksym;")`` for each kfunc of the BTF, by name.

    ``skip``: names never to declare (e.g. libbpf's helpers).  Raises
    ``BtfError`` when the BTF is malformed.
    """
    btf = _Btf(btf_bytes)
    writer = _Writer(btf)
    skip = frozenset(skip)
    out: dict[str, str] = {}
    for tag, tid, component in btf.tags:
        if tag != "bpf_kfunc" or component != 0xFFFFFFFF:
            continue
        func = btf.get(tid)
        if func.kind != _FUNC:
            continue
        name = btf.func_name(func)
        if not _IDENT.fullmatch(name) or name in skip:
            continue
        proto = btf.get(func.ref)
        if proto.kind != _FUNC_PROTO:
            continue
        try:
            text = writer.decl(proto.ref, f"{name}({writer.params(proto, 0)})")
        except (_Unwritable, BtfError):
            continue
        out[name] = f"extern {text} __weak __ksym;"
    return sorted(out.items())


def declarations(btf_bytes: bytes, *, skip: Iterable[str] = ()) -> str:
    """The kfunc block for vmlinux.h (empty when the BTF tags no kfunc).

    One declaration per paragraph, as bpftool separates vmlinux.h's
    declarations; raises ``BtfError`` when the BTF is malformed.
    """
    protos = kfunc_prototypes(btf_bytes, skip=skip)
    if not protos:
        return ""
    head = "\n".join([
        BEGIN,
        "/* The kernel's kfuncs (BTF FUNCs tagged bpf_kfunc), declared by lcc. */",
        "#ifndef __ksym",
        '#define __ksym __attribute__((section(".ksyms")))',
        "#endif",
        "#ifndef __weak",
        "#define __weak __attribute__((weak))",
        "#endif"])
    return "\n\n".join([head, *(text for _, text in protos), END]) + "\n"


def append_to(header: str, block: str) -> str:
    """bpftool's vmlinux.h ``header`` with ``block`` before its closing
    preprocessor lines (the ``#pragma clang attribute pop`` and the include
    guard's ``#endif``).  A header that already declares kfuncs (a newer
    bpftool's) is returned unchanged."""
    if not block or "BPF_NO_KFUNC_PROTOTYPES" in header:
        return header
    chunks = header.rstrip("\n").split("\n\n")
    cut = len(chunks)
    while cut > 0 and chunks[cut - 1].lstrip("\n").startswith("#"):
        cut -= 1
    return "\n\n".join([*chunks[:cut], block.rstrip("\n"), *chunks[cut:]]) + "\n"
