"""Codecs: map and event bytes to Python values and back, compiled from BTF types.

:func:`codec` compiles a :mod:`lcc.btf` type into a :class:`Codec` whose
``decode(buf, offset)`` builds the Python value and whose ``encode(value)``
builds the bytes.

Decoded values:
  integers and enums -> int; ``char[N]`` -> str (up to the first NUL);
  other arrays -> tuple; structs and unions -> a generated class, a tuple
  subclass with attribute access, ``to_dict()`` and hashing (so they serve as
  map keys); members of anonymous structs and unions read as the parent's
  own; floats -> float; pointers -> int.
Encoding accepts the decoded forms back, plus dicts and objects with the
fields as attributes (missing members stay zero, unknown dict keys are an
error), lists for arrays and str or bytes for char arrays.

Structs made only of integers, chars, floats, pointers, arrays and nested
structs of these decode through one precompiled :class:`struct.Struct`;
structs with bitfields or unions decode member by member.  A codec keeps
that flat plan (:attr:`Codec.flat`) so that consumers decoding many values
at once (the ring buffer reader) reuse it instead of working it out again,
and :meth:`Codec.decode_record` is the one place where an event shorter
than its type is zero-filled before decoding.
"""

from __future__ import annotations

import keyword
import struct
import sys
import weakref
from operator import itemgetter

from .btf import Array, BtfType, Enum, Float, Int, Member, Ptr, Struct, Void, iter_members
from .errors import BtfError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Any, Callable

try:  # CPython's namedtuple field accessor reads the item in C, with no Python call
    from collections import _tuplegetter as _member_getter  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - other interpreters
    def _member_getter(i: int, doc: str) -> property:
        return property(lambda self: tuple.__getitem__(self, i), doc=doc)

_ORDER = "<" if sys.byteorder == "little" else ">"


class Codec:
    """Decode and encode one BTF type.

    ``decode(buf, offset=0)`` takes any buffer (bytes, bytearray, memoryview,
    mmap) and returns the Python value; ``encode(value)`` returns ``size``
    bytes.  ``cls`` is the generated class for structs and unions, else None.
    ``encode_into(buf, offset, value)`` writes a value into a buffer; given
    as None, it is compiled from the type when first used (most codecs, the
    events', only ever decode).

    ``flat`` is the codec's flat plan, for types that decode from one
    :class:`struct.Struct`: ``(fmt, build)``, the struct format of the value
    without a byte-order prefix (``struct`` is ``fmt`` in native byte order)
    and ``build(t)``, which makes the value from the tuple that format
    unpacks.  It is None for member-by-member codecs (unions, bitfields).
    """

    __slots__ = ("type", "size", "decode", "_encode_into", "cls", "struct", "flat",
                 "__weakref__")

    def __init__(self, type_: BtfType, size: int, decode: Callable[..., Any],
                 encode_into: Callable[[bytearray, int, Any], None] | None,
                 cls: type | None = None, struct_: struct.Struct | None = None,
                 flat: tuple[str, Callable[[tuple], Any]] | None = None) -> None:
        self.type = type_
        self.size = size
        self.decode = decode
        self._encode_into = encode_into
        self.cls = cls
        self.struct = struct_
        self.flat = flat

    def decode_record(self, data: bytes | bytearray | memoryview) -> Any:
        """Decode one record (an event) that starts at the beginning of ``data``.

        A record shorter than the type is zero-filled first (a BPF program
        may send less than the type it declares); a longer one decodes its
        first ``size`` bytes.
        """
        if len(data) < self.size:
            data = bytes(data).ljust(self.size, b"\0")
        return self.decode(data, 0)

    @property
    def encode_into(self) -> Callable[[bytearray, int, Any], None]:
        enc = self._encode_into
        if enc is None:
            enc = self._encode_into = _encoder(self.type.resolve())
        return enc

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


_ABSENT = object()


def _field(obj: Any, name: str) -> Any:
    """Member ``name`` of a dict or an object; _ABSENT when it has none (left zero)."""
    if isinstance(obj, dict):
        return obj.get(name, _ABSENT)
    return getattr(obj, name, _ABSENT)


# Codecs by id() of their type, for as long as something uses them: a codec
# holds its type, so the id cannot be reused while the entry exists, and the
# codecs of a closed object go away with its maps.
_codec_cache: "weakref.WeakValueDictionary[int, Codec]" = weakref.WeakValueDictionary()


def codec(t: BtfType) -> Codec:
    """The codec of ``t`` (cached while in use)."""
    c = _codec_cache.get(id(t))
    if c is None:
        c = _Builder().build(t)
        _codec_cache[id(t)] = c
    return c


def define(src: str, name: str, ns: dict[str, Any], filename: str) -> Callable[..., Any]:
    """Run generated source that defines function ``name`` in ``ns``; return the function.

    ``filename`` names its code in tracebacks.  exec() takes the source text
    itself rather than compile()'s result because the compile() builtin sets
    up the ast module's node types on its first call, about 1 ms of a tool's
    start.
    """
    exec(src, ns)  # noqa: S102 - source generated from BTF
    fn = ns[name]
    fn.__code__ = fn.__code__.replace(co_filename=filename)
    return fn


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

    def direct(self, count: int, expr: Callable[[int], str]) -> str | None:
        """Whether a flat plan's tuple needs no glue code: ``"item"`` when the value
        is its one item (a scalar), ``"class"`` when it is the tuple made a
        struct class (a struct of scalars), else None."""
        src = expr(0)
        if count == 1 and src == "t[0]":
            return "item"
        items = "".join(f"t[{i}], " for i in range(count))
        names = [k for k, v in self.ns.items() if isinstance(v, type)]
        if any(src == f"_new({k}, ({items}))" for k in names):
            return "class"
        return None

    def build(self, t: BtfType) -> Codec:
        r = t.resolve()
        size = _size_of(r)
        cls = struct_class(r) if isinstance(r, Struct) else None
        plan = self.flat(t)
        if plan is not None and struct.calcsize(_ORDER + plan[0]) == size:
            fmt, count, expr = plan
            st = struct.Struct(_ORDER + fmt)
            how = self.direct(count, expr)
            build: Callable[[tuple], Any]
            if how == "item":
                dec, build = _item_decoder(st), _first
            elif how == "class":
                # A generated class is a tuple subclass: cls(t) is tuple.__new__(cls, t).
                dec, build = _class_decoder(st, cls), cls  # type: ignore[arg-type,assignment]
            else:  # nested structs, strings...: generate the glue, both forms at once
                self.ns["_S"] = st
                src = (f"def decode(buf, off=0):\n"
                       f"    t = _S.unpack_from(buf, off)\n"
                       f"    return {expr(0)}\n"
                       f"def build(t):\n"
                       f"    return {expr(0)}\n")
                dec = define(src, "decode", self.ns, f"<lcc codec {t}>")
                build = self.ns["build"]
                build.__code__ = build.__code__.replace(co_filename=dec.__code__.co_filename)
            return Codec(t, size, dec, None, cls, st, (fmt, build))
        return Codec(t, size, _slow_decoder(r), None, cls)


_first = itemgetter(0)


def _item_decoder(st: struct.Struct) -> Callable[..., Any]:
    unpack = st.unpack_from

    def decode(buf, off=0):
        return unpack(buf, off)[0]

    return decode


def _class_decoder(st: struct.Struct, cls: type) -> Callable[..., Any]:
    unpack, new = st.unpack_from, tuple.__new__

    def decode(buf, off=0):
        return new(cls, unpack(buf, off))

    return decode


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


def _encoder(r: BtfType, strict: bool = True) -> Callable[[bytearray, int, Any], None]:
    """Encoder of resolved type ``r``; ``strict`` rejects dict keys that name no member
    (off for anonymous members, which see their parent's dict)."""
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
        members = [(m, _encoder(m.type.resolve(), strict=bool(m.name))) for m in r.members]
        known = frozenset(name for name, _t, _o in iter_members(r))

        def enc(out, off, v):
            if strict and isinstance(v, dict) and not known.issuperset(v):
                extra = ", ".join(sorted(map(str, set(v) - known)))
                raise ValueError(f"{r} has no member {extra}")
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
                if fv is _ABSENT:
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

    _anon: frozenset[str] = frozenset()  # fields that stand for anonymous members

    def to_dict(self) -> dict[str, Any]:
        """The value as plain dicts, lists and scalars (nested structs included).

        Members of anonymous structs and unions appear as this struct's own,
        as C reads them.
        """
        out: dict[str, Any] = {}
        for f, v in zip(self._fields, self):
            if f in self._anon and isinstance(v, StructValue):
                out.update(v.to_dict())
            else:
                out[f] = _plain(v)
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={v!r}" for f, v in zip(self._fields, self))
        return f"{type(self).__name__}({inner})"

    def __getitem__(self, key):
        if isinstance(key, str):
            if key in self._fields:
                return tuple.__getitem__(self, self._fields.index(key))
            if isinstance(getattr(type(self), key, None), property):
                return getattr(self, key)  # a member of an anonymous member
            raise KeyError(key)
        return tuple.__getitem__(self, key)

    @property
    def _as_parameter_(self) -> bytes:
        # ctypes.string_at(event, size) works on a decoded event, as pyLCC
        # scripts do with the raw pointer they used to receive.  Perf samples
        # report their size rounded up to 8 bytes (minus the 4-byte header),
        # so pad: string_at must never read past the end of this buffer.
        if self._btf_type is None:
            return bytes(8)
        return codec(self._btf_type).encode(self) + bytes(8)


def _plain(v: Any) -> Any:
    if isinstance(v, StructValue):
        return v.to_dict()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


# Generated classes by id() of their type, while used (a class holds its type).
_classes: "weakref.WeakValueDictionary[int, type]" = weakref.WeakValueDictionary()


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
    anon = frozenset(f for f, m in zip(fields, t.members) if not m.name)
    ns: dict[str, Any] = {"__slots__": (), "_fields": fields, "_btf_type": t, "_anon": anon}
    for i, f in enumerate(fields):
        ns[f] = _member_getter(i, f"member {f}")
    # C11 anonymous structs and unions: their members read as this struct's own.
    for i, m in enumerate(t.members):
        if m.name or not isinstance(m.type.resolve(), Struct):
            continue
        for name, _mt, _off in iter_members(m.type):
            ident = _ident(name, 0)
            if ident not in ns:
                ns[ident] = property(lambda self, i=i, n=ident: getattr(self[i], n),
                                     doc=f"member {name} of an anonymous member")
    name = t.name or ("anon_union" if t.is_union else "anon_struct")
    cls = type(name, (StructValue,), ns)
    _classes[id(t)] = cls
    return cls
