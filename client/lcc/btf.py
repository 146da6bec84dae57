"""Types from BTF, and codecs that turn map and event bytes into Python values.

:class:`Btf` reads type records through libbpf's btf API (never by parsing
C) into an inert model: :class:`Int`, :class:`Ptr`, :class:`Array`,
:class:`Struct` (unions too), :class:`Enum`, :class:`Float`, :class:`Datasec`
and so on.  :func:`codec` compiles a type into a :class:`Codec` whose
``decode(buf, offset)`` builds the Python value and whose ``encode(value)``
builds the bytes.

Decoded values:
  integers and enums -> int; ``char[N]`` -> str (up to the first NUL);
  other arrays -> tuple; structs and unions -> a generated class, a tuple
  subclass with attribute access, ``to_dict()`` and hashing (so they serve as
  map keys); floats -> float; pointers -> int.
Encoding accepts the decoded forms back, plus dicts and objects with the
fields as attributes, lists for arrays and bytes for char arrays.

Structs made only of integers, chars, floats, pointers, arrays and nested
structs of these decode through one precompiled :class:`struct.Struct`;
structs with bitfields or unions decode member by member.
"""

from __future__ import annotations

import keyword
import struct
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Iterator

from . import _libbpf
from .errors import BtfError

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19

_ORDER = "<" if sys.byteorder == "little" else ">"


# -- the type model -------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class BtfType:
    id: int
    name: str

    @property
    def size(self) -> int:
        raise BtfError(f"{self} has no size")

    def resolve(self) -> "BtfType":
        """This type with typedefs and qualifiers stripped."""
        return self

    def __str__(self) -> str:
        return self.name or f"<anon {type(self).__name__.lower()}>"


@dataclass(frozen=True, eq=False)
class Void(BtfType):
    def __str__(self) -> str:
        return "void"


@dataclass(frozen=True, eq=False)
class Int(BtfType):
    nbytes: int
    signed: bool = False
    is_char: bool = False
    is_bool: bool = False
    bits: int = 0

    @property
    def size(self) -> int:
        return self.nbytes


@dataclass(frozen=True, eq=False)
class Float(BtfType):
    nbytes: int

    @property
    def size(self) -> int:
        return self.nbytes


@dataclass(frozen=True, eq=False)
class Ptr(BtfType):
    """A pointer; its target is looked up on demand so self-referencing structs work."""

    target_id: int = 0
    btf: "Btf | None" = field(default=None, repr=False)

    @property
    def target(self) -> BtfType | None:
        if not self.target_id or self.btf is None:
            return None
        return self.btf.type(self.target_id)

    @property
    def size(self) -> int:
        return 8

    def __str__(self) -> str:
        return f"{self.target if self.target is not None else 'void'} *"


@dataclass(frozen=True, eq=False)
class Array(BtfType):
    elem: BtfType = None  # type: ignore[assignment]
    nelems: int = 0

    @property
    def size(self) -> int:
        return self.elem.size * self.nelems

    def __str__(self) -> str:
        return f"{self.elem}[{self.nelems}]"


@dataclass(frozen=True, eq=False)
class Member:
    name: str
    type: BtfType
    bit_offset: int
    bitfield_size: int = 0

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


@dataclass(frozen=True, eq=False)
class Struct(BtfType):
    nbytes: int = 0
    members: tuple[Member, ...] = ()
    is_union: bool = False

    @property
    def size(self) -> int:
        return self.nbytes

    def __str__(self) -> str:
        kw = "union" if self.is_union else "struct"
        return f"{kw} {self.name}" if self.name else f"{kw} <anon>"


@dataclass(frozen=True, eq=False)
class Enum(BtfType):
    nbytes: int = 4
    values: tuple[tuple[str, int], ...] = ()
    signed: bool = False

    @property
    def size(self) -> int:
        return self.nbytes

    @cached_property
    def names(self) -> dict[int, str]:
        """value -> name (the first name wins when values repeat)."""
        out: dict[int, str] = {}
        for n, v in self.values:
            out.setdefault(v, n)
        return out

    def __str__(self) -> str:
        return f"enum {self.name}" if self.name else "enum <anon>"


@dataclass(frozen=True, eq=False)
class Fwd(BtfType):
    pass


@dataclass(frozen=True, eq=False)
class Alias(BtfType):
    """typedef, const, volatile, restrict and type tags: a name on another type."""

    kind: int = KIND_TYPEDEF
    target: BtfType | None = None

    @property
    def size(self) -> int:
        return self.resolve().size

    def resolve(self) -> BtfType:
        t: BtfType | None = self.target
        while isinstance(t, Alias):
            t = t.target
        return t if t is not None else Void(0, "void")

    def __str__(self) -> str:
        if self.kind == KIND_TYPEDEF:
            return self.name
        qual = {KIND_CONST: "const", KIND_VOLATILE: "volatile", KIND_RESTRICT: "restrict"}
        return f"{qual.get(self.kind, '')} {self.target}".strip()


@dataclass(frozen=True, eq=False)
class Func(BtfType):
    proto_id: int = 0


@dataclass(frozen=True, eq=False)
class FuncProto(BtfType):
    params: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, eq=False)
class Var(BtfType):
    type: BtfType = None  # type: ignore[assignment]
    linkage: int = 0


@dataclass(frozen=True, eq=False)
class VarSecinfo:
    var: Var
    offset: int
    nbytes: int


@dataclass(frozen=True, eq=False)
class Datasec(BtfType):
    nbytes: int = 0
    vars: tuple[VarSecinfo, ...] = ()

    @property
    def size(self) -> int:
        return self.nbytes


@dataclass(frozen=True, eq=False)
class Other(BtfType):
    kind: int = 0


# -- reading BTF through libbpf --------------------------------------------------

class Btf:
    """A BTF blob read through libbpf: an object's BTF or the kernel's.

    ``owner`` keeps the libbpf object that owns the pointer alive; a Btf made
    by :meth:`vmlinux` or :meth:`from_file` owns its pointer and frees it in
    :meth:`close`.
    """

    def __init__(self, ptr: int, *, owner: object = None, owned: bool = False) -> None:
        if not ptr:
            raise BtfError("this BPF object carries no BTF",
                           hint="compile with clang -g (lcc's toolchain always does)")
        self._ptr = ptr
        self._owner = owner
        self._owned = owned
        self._types: dict[int, BtfType] = {0: Void(0, "void")}

    _vmlinux: "Btf | None" = None

    @classmethod
    def vmlinux(cls) -> "Btf":
        """The running kernel's BTF (loaded once per process)."""
        if cls._vmlinux is None:
            cls._vmlinux = cls(_libbpf.btf_load_vmlinux(), owned=True)
        return cls._vmlinux

    @classmethod
    def from_file(cls, path: str) -> "Btf":
        return cls(_libbpf.btf_parse(path), owned=True)

    def close(self) -> None:
        if self._owned and self._ptr:
            _libbpf.btf_free(self._ptr)
        self._ptr = 0

    def __len__(self) -> int:
        return _libbpf.btf_type_count(self._ptr)

    def find(self, name: str, kind: int) -> BtfType | None:
        """The type called ``name`` of BTF ``kind`` (KIND_*), or None."""
        tid = _libbpf.btf_find(self._ptr, name, kind)
        return self.type(tid) if tid > 0 else None

    def enum(self, name: str) -> Enum:
        """The enum called ``name`` (``enum skb_drop_reason`` -> ``"skb_drop_reason"``)."""
        t = self.find(name, KIND_ENUM) or self.find(name, KIND_ENUM64)
        if not isinstance(t, Enum):
            raise BtfError(f"enum {name} is not in this BTF")
        return t

    def type(self, type_id: int) -> BtfType:
        """The model of type ``type_id`` (cached; recursive types are cut at pointers)."""
        t = self._types.get(type_id)
        if t is None:
            t = self._build(type_id)
            self._types[type_id] = t
        return t

    def _build(self, tid: int) -> BtfType:
        kind, name, vlen, kflag, size_type, extra = _libbpf.btf_raw_type(self._ptr, tid)
        if kind == KIND_INT:
            enc = extra[0]
            flags = (enc >> 24) & 0x0F
            return Int(tid, name, size_type, signed=bool(flags & 1), is_char=bool(flags & 2),
                       is_bool=bool(flags & 4), bits=enc & 0xFF)
        if kind == KIND_FLOAT:
            return Float(tid, name, size_type)
        if kind == KIND_PTR:
            # Pointers are not followed eagerly: linked lists would recurse forever.
            return Ptr(tid, name, target_id=size_type, btf=self)
        if kind == KIND_ARRAY:
            elem_id, _index, nelems = extra[0]
            return Array(tid, name, self.type(elem_id), nelems)
        if kind in (KIND_STRUCT, KIND_UNION):
            members = []
            for mname, mtype, moff in extra:
                bits = (moff >> 24) if kflag else 0
                off = (moff & 0xFFFFFF) if kflag else moff
                members.append(Member(mname, self.type(mtype), off, bits))
            return Struct(tid, name, size_type, tuple(members), is_union=kind == KIND_UNION)
        if kind == KIND_ENUM:
            return Enum(tid, name, size_type, tuple((n, v) for n, v in extra), signed=kflag)
        if kind == KIND_ENUM64:
            vals = tuple((n, lo | (hi << 32)) for n, lo, hi in extra)
            return Enum(tid, name, size_type, vals, signed=kflag)
        if kind == KIND_FWD:
            return Fwd(tid, name)
        if kind in (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG):
            return Alias(tid, name, kind, self.type(size_type))
        if kind == KIND_FUNC:
            return Func(tid, name, size_type)
        if kind == KIND_FUNC_PROTO:
            return FuncProto(tid, name, tuple((n, t) for n, t in extra))
        if kind == KIND_VAR:
            return Var(tid, name, self.type(size_type), extra[0] if extra else 0)
        if kind == KIND_DATASEC:
            vars_ = []
            for vtype, voff, vsize in extra:
                v = self.type(vtype)
                if isinstance(v, Var):
                    vars_.append(VarSecinfo(v, voff, vsize))
            return Datasec(tid, name, size_type, tuple(vars_))
        return Other(tid, name, kind)

    def map_definitions(self) -> dict[str, Struct]:
        """Map name -> the anonymous struct of its BTF definition (SEC(".maps"))."""
        sec = self.find(".maps", KIND_DATASEC)
        out: dict[str, Struct] = {}
        if isinstance(sec, Datasec):
            for vs in sec.vars:
                t = vs.var.type.resolve()
                if isinstance(t, Struct):
                    out[vs.var.name] = t
        return out

    def map_event_type(self, map_name: str) -> BtfType | None:
        """The event type a map declares with ``__type(lbc_event, T)`` (lbc.h), if any."""
        d = self.map_definitions().get(map_name)
        if d is None:
            return None
        for m in d.members:
            if m.name == "lbc_event":
                t = m.type.resolve()
                if isinstance(t, Ptr) and t.target is not None:
                    return t.target
        return None

    def map_uint_field(self, map_name: str, field_name: str) -> int | None:
        """A ``__uint(field, N)`` value of a map definition (N is the array length)."""
        d = self.map_definitions().get(map_name)
        if d is None:
            return None
        for m in d.members:
            if m.name == field_name:
                t = m.type.resolve()
                if isinstance(t, Ptr) and isinstance(t.target, Array):
                    return t.target.nelems
        return None

    def named_type(self, name: str) -> BtfType:
        """Look a type up by C spelling: ``struct data_t``, ``union u``, ``enum e``, a typedef."""
        name = name.strip()
        for prefix, kinds in (("struct ", (KIND_STRUCT,)), ("union ", (KIND_UNION,)),
                              ("enum ", (KIND_ENUM, KIND_ENUM64))):
            if name.startswith(prefix):
                base = name[len(prefix):].strip()
                for k in kinds:
                    t = self.find(base, k)
                    if t is not None:
                        return t
                raise BtfError(f"type '{name}' is not in the object's BTF",
                               hint="a type only reaches BTF if the program uses it")
        for k in (KIND_TYPEDEF, KIND_STRUCT, KIND_UNION, KIND_INT, KIND_ENUM):
            t = self.find(name, k)
            if t is not None:
                return t
        raise BtfError(f"type '{name}' is not in the object's BTF",
                       hint="a type only reaches BTF if the program uses it")


def enum_names(name: str) -> dict[int, str]:
    """value -> name of a kernel enum, e.g. ``enum_names("skb_drop_reason")``."""
    return dict(Btf.vmlinux().enum(name).names)


# -- codecs ----------------------------------------------------------------------

class Codec:
    """Decode and encode one BTF type.

    ``decode(buf, offset=0)`` takes any buffer (bytes, bytearray, memoryview,
    mmap) and returns the Python value; ``encode(value)`` returns ``size``
    bytes.  ``cls`` is the generated class for structs and unions, else None.
    """

    __slots__ = ("type", "size", "decode", "encode_into", "cls", "struct")

    def __init__(self, type_: BtfType, size: int, decode: Callable[..., Any],
                 encode_into: Callable[[bytearray, int, Any], None], cls: type | None = None,
                 struct_: struct.Struct | None = None) -> None:
        self.type = type_
        self.size = size
        self.decode = decode
        self.encode_into = encode_into
        self.cls = cls
        self.struct = struct_

    def encode(self, value: Any) -> bytes:
        buf = bytearray(self.size)
        self.encode_into(buf, 0, value)
        return bytes(buf)

    def __repr__(self) -> str:
        return f"<Codec {self.type} size={self.size}>"


def raw_codec(size: int) -> Codec:
    """A codec for data without BTF: values are bytes of ``size``."""

    def decode(buf, off=0):
        return bytes(buf[off:off + size])

    def encode_into(out, off, value):
        out[off:off + size] = _as_bytes(value, size)

    return Codec(Void(0, f"bytes[{size}]"), size, decode, encode_into)


def _as_bytes(value: Any, size: int) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        b = bytes(value)
        if len(b) > size:
            raise ValueError(f"{len(b)} bytes do not fit in {size}")
        return b.ljust(size, b"\0")
    if isinstance(value, int):
        return value.to_bytes(size, sys.byteorder, signed=value < 0)
    raise TypeError(f"cannot encode {type(value).__name__} as {size} raw bytes")


_INT_FMT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
            (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}


def _cstr(b: bytes) -> str:
    i = b.find(b"\0")
    return (b if i < 0 else b[:i]).decode("utf-8", "replace")


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, 0)
    return getattr(obj, name, 0)


_codec_cache: dict[int, Codec] = {}


def codec(t: BtfType) -> Codec:
    """The codec of ``t`` (cached per BTF object and type)."""
    # Keyed by identity: the cache holds the type, so the id cannot be reused.
    c = _codec_cache.get(id(t))
    if c is None:
        c = _Builder().build(t)
        _codec_cache[id(t)] = c
    return c


class _Builder:
    """Compiles a type into flat struct-format pieces plus Python glue code."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"_new": tuple.__new__, "_cstr": _cstr}
        self.n = 0

    def _name(self, prefix: str, obj: Any) -> str:
        self.n += 1
        nm = f"{prefix}{self.n}"
        self.ns[nm] = obj
        return nm

    # A "flat plan" describes a type as (format, item count, expr builder), where
    # the expr builder takes the index of its first tuple item and returns the
    # Python expression that rebuilds the value from tuple ``t``.

    def flat(self, t: BtfType) -> tuple[str, int, Callable[[int], str]] | None:
        r = t.resolve()
        if isinstance(r, Int):
            if r.is_bool:
                return "?", 1, lambda i: f"t[{i}]"
            f = _INT_FMT.get((r.nbytes, r.signed))
            if f is None:  # __int128 and friends
                return None
            return f, 1, lambda i: f"t[{i}]"
        if isinstance(r, Enum):
            f = _INT_FMT.get((r.nbytes, r.signed))
            return (f, 1, lambda i: f"t[{i}]") if f else None
        if isinstance(r, Float):
            f = {4: "f", 8: "d"}.get(r.nbytes)
            return (f, 1, lambda i: f"t[{i}]") if f else None
        if isinstance(r, Ptr):
            return "Q", 1, lambda i: f"t[{i}]"
        if isinstance(r, Array):
            er = r.elem.resolve()
            if _is_char_like(r.elem):
                return f"{r.nelems}s", 1, lambda i: f"_cstr(t[{i}])"
            if r.nelems == 0:
                return "", 0, lambda i: "()"
            sub = self.flat(r.elem)
            if sub is None:
                return None
            sfmt, scount, sexpr = sub
            if scount == 1 and sexpr(0) == "t[0]" and len(sfmt) == 1:
                n = r.nelems
                return f"{n}{sfmt}", n, lambda i, n=n: f"t[{i}:{i + n}]"
            if r.nelems > 256:
                return None
            fmt = sfmt * r.nelems

            def expr(i, n=r.nelems, sc=scount, se=sexpr):
                parts = [se(i + k * sc) for k in range(n)]
                return "(" + ", ".join(parts) + ",)"

            return fmt, scount * r.nelems, expr
        if isinstance(r, Struct):
            if r.is_union or any(m.bitfield_size or m.bit_offset % 8 for m in r.members):
                return None
            fmt, count, exprs = "", 0, []
            pos = 0
            for m in r.members:
                off = m.bit_offset // 8
                if off < pos:  # overlapping members: not a plain struct
                    return None
                sub = self.flat(m.type)
                if sub is None:
                    return None
                if off > pos:
                    fmt += f"{off - pos}x"
                sfmt, scount, sexpr = sub
                fmt += sfmt
                exprs.append((count, sexpr))
                count += scount
                pos = off + m.type.size
            if r.nbytes > pos:
                fmt += f"{r.nbytes - pos}x"
            cls = self._name("C", struct_class(r))

            def expr(i, exprs=exprs, cls=cls):
                parts = [e(i + c) for c, e in exprs]
                return f"_new({cls}, (" + "".join(p + ", " for p in parts) + "))"

            return fmt, count, expr
        return None

    def build(self, t: BtfType) -> Codec:
        r = t.resolve()
        size = _size_of(r)
        cls = struct_class(r) if isinstance(r, Struct) else None
        plan = self.flat(t)
        if plan is not None and struct.calcsize(_ORDER + plan[0]) == size:
            fmt, _count, expr = plan
            st = struct.Struct(_ORDER + fmt)
            self.ns["_S"] = st
            src = (f"def decode(buf, off=0):\n"
                   f"    t = _S.unpack_from(buf, off)\n"
                   f"    return {expr(0)}\n")
            exec(compile(src, f"<lcc codec {t}>", "exec"), self.ns)
            dec = self.ns["decode"]
            return Codec(t, size, dec, _encoder(r), cls, st)
        return Codec(t, size, _slow_decoder(r), _encoder(r), cls)


def _is_char_like(elem: BtfType) -> bool:
    """char/unsigned char/u8-named arrays read as strings only for char types."""
    r = elem.resolve()
    # clang emits `char` as a one-byte INT named "char"; u8/unsigned char stay numbers.
    return isinstance(r, Int) and r.nbytes == 1 and (r.is_char or r.name in ("char", "signed char"))


def _size_of(t: BtfType) -> int:
    try:
        return t.size
    except BtfError:
        return 0


def _slow_decoder(r: BtfType) -> Callable[..., Any]:
    """Member-by-member decoding for unions, bitfields and other odd layouts."""
    if isinstance(r, Struct):
        cls = struct_class(r)
        parts = []
        for m in r.members:
            if m.bitfield_size:
                parts.append(("bits", m))
            else:
                parts.append(("codec", m, codec(m.type)))

        def decode(buf, off=0, parts=parts, cls=cls, nbytes=r.nbytes):
            vals = []
            whole = None
            for p in parts:
                if p[0] == "bits":
                    m = p[1]
                    if whole is None:
                        whole = int.from_bytes(bytes(buf[off:off + nbytes]), sys.byteorder)
                    v = (whole >> m.bit_offset) & ((1 << m.bitfield_size) - 1)
                    mr = m.type.resolve()
                    if getattr(mr, "signed", False) and v >> (m.bitfield_size - 1):
                        v -= 1 << m.bitfield_size
                    vals.append(v)
                else:
                    m, c = p[1], p[2]
                    vals.append(c.decode(buf, off + m.bit_offset // 8))
            return tuple.__new__(cls, vals)

        return decode
    if isinstance(r, Array):
        ec = codec(r.elem)
        es = ec.size

        def decode(buf, off=0, n=r.nelems):
            return tuple(ec.decode(buf, off + i * es) for i in range(n))

        return decode
    if isinstance(r, (Int, Enum)):
        signed = getattr(r, "signed", False)

        def decode(buf, off=0, n=r.size):
            return int.from_bytes(bytes(buf[off:off + n]), sys.byteorder, signed=signed)

        return decode
    size = _size_of(r)
    return raw_codec(size).decode


def _encoder(r: BtfType) -> Callable[[bytearray, int, Any], None]:
    if isinstance(r, (Int, Enum)):
        n, signed = r.size, getattr(r, "signed", False)
        if isinstance(r, Int) and r.is_bool:
            signed = False

        def enc(out, off, v):
            if isinstance(v, str) and isinstance(r, Enum):
                v = dict(r.values)[v]
            out[off:off + n] = int(v).to_bytes(n, sys.byteorder, signed=signed and int(v) < 0)

        return enc
    if isinstance(r, Float):
        fmt = _ORDER + {4: "f", 8: "d"}.get(r.nbytes, "d")

        def enc(out, off, v):
            struct.pack_into(fmt, out, off, float(v))

        return enc
    if isinstance(r, Ptr):
        def enc(out, off, v):
            out[off:off + 8] = int(v).to_bytes(8, sys.byteorder)

        return enc
    if isinstance(r, Array):
        er = r.elem.resolve()
        esize = _size_of(er)
        if _is_char_like(r.elem):
            def enc(out, off, v, n=r.nelems):
                out[off:off + n] = _as_bytes(v, n)[:n]

            return enc
        eenc = _encoder(er)

        def enc(out, off, v, n=r.nelems):
            items = list(v)
            if len(items) > n:
                raise ValueError(f"{len(items)} items do not fit in {r}")
            for i, item in enumerate(items):
                eenc(out, off + i * esize, item)

        return enc
    if isinstance(r, Struct):
        members = [(m, _encoder(m.type.resolve())) for m in r.members]

        def enc(out, off, v):
            if isinstance(v, (bytes, bytearray, memoryview)):
                out[off:off + r.nbytes] = _as_bytes(v, r.nbytes)
                return
            if isinstance(v, int) and len(members) == 1:
                v = {members[0][0].name: v}
            if isinstance(v, StructValue) and len(v) == len(members):
                # A decoded value: go by position (member names may be mangled).
                for (m, e), fv in zip(members, v):
                    if m.bitfield_size:
                        _put_bits(out, off, r.nbytes, m, fv)
                    elif m.name or not r.is_union:
                        e(out, off + m.bit_offset // 8, fv)
                return
            for m, e in members:
                if not m.name:  # anonymous nested struct/union: fields live on v itself
                    e(out, off + m.bit_offset // 8, v)
                    continue
                fv = _field(v, m.name)
                if r.is_union and isinstance(v, dict) and m.name not in v:
                    continue
                if m.bitfield_size:
                    _put_bits(out, off, r.nbytes, m, fv)
                else:
                    e(out, off + m.bit_offset // 8, fv)

        return enc

    def enc(out, off, v):
        size = _size_of(r)
        out[off:off + size] = _as_bytes(v, size)

    return enc


def _put_bits(out: bytearray, off: int, nbytes: int, m: Member, value: Any) -> None:
    whole = int.from_bytes(out[off:off + nbytes], sys.byteorder)
    mask = ((1 << m.bitfield_size) - 1) << m.bit_offset
    whole = (whole & ~mask) | ((int(value) << m.bit_offset) & mask)
    out[off:off + nbytes] = whole.to_bytes(nbytes, sys.byteorder)


# -- generated struct classes ------------------------------------------------------

class StructValue(tuple):
    """Base of generated struct classes: a tuple with named fields."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _btf_type: Struct | None = None

    def to_dict(self) -> dict[str, Any]:
        """The value as plain dicts, lists and scalars (nested structs included)."""
        return {f: _plain(v) for f, v in zip(self._fields, self)}

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={v!r}" for f, v in zip(self._fields, self))
        return f"{type(self).__name__}({inner})"

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return tuple.__getitem__(self, self._fields.index(key))
            except ValueError:
                raise KeyError(key) from None
        return tuple.__getitem__(self, key)

    @property
    def _as_parameter_(self) -> bytes:
        # ctypes.string_at(event, size) works on a decoded event, as pyLCC
        # scripts do with the raw pointer they used to receive.
        from . import btf as _self  # noqa: PLW0406 - late to avoid a cycle at class creation
        return _self.codec(self._btf_type).encode(self) if self._btf_type else b""


def _plain(v: Any) -> Any:
    if isinstance(v, StructValue):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


_classes: dict[int, type] = {}


def _ident(name: str, i: int) -> str:
    if not name:
        return f"_{i}"
    if keyword.iskeyword(name):
        return name + "_"
    return name


def struct_class(t: Struct) -> type:
    """The generated value class for a struct or union type (one per type)."""
    cls = _classes.get(id(t))
    if cls is not None and cls._btf_type is t:
        return cls
    fields = tuple(_ident(m.name, i) for i, m in enumerate(t.members))
    ns: dict[str, Any] = {"__slots__": (), "_fields": fields, "_btf_type": t}
    from operator import itemgetter
    for i, f in enumerate(fields):
        ns[f] = property(itemgetter(i), doc=f"member {f}")
    name = t.name or ("anon_union" if t.is_union else "anon_struct")
    cls = type(name, (StructValue,), ns)
    _classes[id(t)] = cls
    return cls


def iter_members(t: BtfType) -> Iterator[tuple[str, BtfType, int]]:
    """(name, type, byte offset) of a struct's members, anonymous ones flattened."""
    r = t.resolve()
    if not isinstance(r, Struct):
        return
    for m in r.members:
        if not m.name:
            for name, mt, off in iter_members(m.type):
                yield name, mt, m.bit_offset // 8 + off
        else:
            yield m.name, m.type, m.bit_offset // 8
