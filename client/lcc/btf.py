"""Types from BTF: an inert model read through libbpf's btf API.

:class:`Btf` reads type records through libbpf (never by parsing C) into
:class:`Int`, :class:`Ptr`, :class:`Array`, :class:`Struct` (unions too),
:class:`Enum`, :class:`Float`, :class:`Datasec` and so on.  Turning bytes
into Python values and back is :mod:`lcc.codecs`' job.
"""

from __future__ import annotations

from . import _btf_raw, _libbpf
from ._record import Record
from .errors import BtfError, ClosedError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from typing import Iterator

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19

# -- the type model -------------------------------------------------------------
# Read-only records (lcc._record), compared by identity: one object per type id.


class BtfType(Record):
    __slots__ = ("id", "name")

    def __init__(self, id: int, name: str) -> None:
        self._set(id=id, name=name)

    @property
    def size(self) -> int:
        raise BtfError(f"{self} has no size")

    def resolve(self) -> "BtfType":
        """This type with typedefs and qualifiers stripped."""
        return self

    def __str__(self) -> str:
        return self.name or f"<anon {type(self).__name__.lower()}>"


class Void(BtfType):
    __slots__ = ()

    def __str__(self) -> str:
        return "void"


class Int(BtfType):
    __slots__ = ("nbytes", "signed", "is_char", "is_bool", "bits")

    def __init__(self, id: int, name: str, nbytes: int, signed: bool = False,
                 is_char: bool = False, is_bool: bool = False, bits: int = 0) -> None:
        self._set(id=id, name=name, nbytes=nbytes, signed=signed, is_char=is_char,
                  is_bool=is_bool, bits=bits)

    @property
    def size(self) -> int:
        return self.nbytes


class Float(BtfType):
    __slots__ = ("nbytes",)

    def __init__(self, id: int, name: str, nbytes: int) -> None:
        self._set(id=id, name=name, nbytes=nbytes)

    @property
    def size(self) -> int:
        return self.nbytes


class Ptr(BtfType):
    """A pointer; its target is looked up on demand so self-referencing structs work."""

    __slots__ = ("target_id", "btf")
    _repr_skip = frozenset({"btf"})

    def __init__(self, id: int, name: str, target_id: int = 0,
                 btf: "Btf | None" = None) -> None:
        self._set(id=id, name=name, target_id=target_id, btf=btf)

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


class Array(BtfType):
    __slots__ = ("elem", "nelems")

    def __init__(self, id: int, name: str, elem: BtfType = None,  # type: ignore[assignment]
                 nelems: int = 0) -> None:
        self._set(id=id, name=name, elem=elem, nelems=nelems)

    @property
    def size(self) -> int:
        return self.elem.size * self.nelems

    def __str__(self) -> str:
        return f"{self.elem}[{self.nelems}]"


class Member(Record):
    __slots__ = ("name", "type", "bit_offset", "bitfield_size")

    def __init__(self, name: str, type: BtfType, bit_offset: int,
                 bitfield_size: int = 0) -> None:
        self._set(name=name, type=type, bit_offset=bit_offset, bitfield_size=bitfield_size)

    @property
    def offset(self) -> int:
        return self.bit_offset // 8


class Struct(BtfType):
    __slots__ = ("nbytes", "members", "is_union")

    def __init__(self, id: int, name: str, nbytes: int = 0,
                 members: tuple[Member, ...] = (), is_union: bool = False) -> None:
        self._set(id=id, name=name, nbytes=nbytes, members=members, is_union=is_union)

    @property
    def size(self) -> int:
        return self.nbytes

    def __str__(self) -> str:
        kw = "union" if self.is_union else "struct"
        return f"{kw} {self.name}" if self.name else f"{kw} <anon>"


class Enum(BtfType):
    __slots__ = ("nbytes", "values", "signed", "_names")

    def __init__(self, id: int, name: str, nbytes: int = 4,
                 values: tuple[tuple[str, int], ...] = (), signed: bool = False) -> None:
        self._set(id=id, name=name, nbytes=nbytes, values=values, signed=signed, _names=None)

    @property
    def size(self) -> int:
        return self.nbytes

    @property
    def names(self) -> dict[int, str]:
        """value -> name (the first name wins when values repeat)."""
        if self._names is None:
            out: dict[int, str] = {}
            for n, v in self.values:
                out.setdefault(v, n)
            self._set(_names=out)
        return self._names

    def __str__(self) -> str:
        return f"enum {self.name}" if self.name else "enum <anon>"


class Fwd(BtfType):
    __slots__ = ()


class Alias(BtfType):
    """typedef, const, volatile, restrict and type tags: a name on another type."""

    __slots__ = ("kind", "target")

    def __init__(self, id: int, name: str, kind: int = KIND_TYPEDEF,
                 target: BtfType | None = None) -> None:
        self._set(id=id, name=name, kind=kind, target=target)

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


class Func(BtfType):
    __slots__ = ("proto_id",)

    def __init__(self, id: int, name: str, proto_id: int = 0) -> None:
        self._set(id=id, name=name, proto_id=proto_id)


class FuncProto(BtfType):
    __slots__ = ("params",)

    def __init__(self, id: int, name: str,
                 params: tuple[tuple[str, int], ...] = ()) -> None:
        self._set(id=id, name=name, params=params)


class Var(BtfType):
    __slots__ = ("type", "linkage")

    def __init__(self, id: int, name: str, type: BtfType = None,  # type: ignore[assignment]
                 linkage: int = 0) -> None:
        self._set(id=id, name=name, type=type, linkage=linkage)


class VarSecinfo(Record):
    __slots__ = ("var", "offset", "nbytes")

    def __init__(self, var: Var, offset: int, nbytes: int) -> None:
        self._set(var=var, offset=offset, nbytes=nbytes)


class Datasec(BtfType):
    __slots__ = ("nbytes", "vars")

    def __init__(self, id: int, name: str, nbytes: int = 0,
                 vars: tuple[VarSecinfo, ...] = ()) -> None:
        self._set(id=id, name=name, nbytes=nbytes, vars=vars)

    @property
    def size(self) -> int:
        return self.nbytes


class Other(BtfType):
    __slots__ = ("kind",)

    def __init__(self, id: int, name: str, kind: int = 0) -> None:
        self._set(id=id, name=name, kind=kind)


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
        """Free the BTF if this Btf owns it; types already built stay usable."""
        if self._owned and self._ptr:
            _libbpf.btf_free(self._ptr)
        self._ptr = 0

    def _detach(self) -> None:
        """The owner freed the BTF (the object was closed): stop reading it."""
        self._ptr = 0

    def _live(self) -> int:
        if not self._ptr:
            raise ClosedError("this BTF belonged to a BPF object that is now closed")
        return self._ptr

    def __len__(self) -> int:
        return _libbpf.btf_type_count(self._live())

    def find(self, name: str, kind: int) -> BtfType | None:
        """The type called ``name`` of BTF ``kind`` (KIND_*), or None."""
        tid = _libbpf.btf_find(self._live(), name, kind)
        return self.type(tid) if tid > 0 else None

    def enum(self, name: str) -> Enum:
        """The enum called ``name`` (``enum skb_drop_reason`` -> ``"skb_drop_reason"``)."""
        t = self.find(name, KIND_ENUM) or self.find(name, KIND_ENUM64)
        if not isinstance(t, Enum):
            raise BtfError(f"enum {name} is not in this BTF")
        return t

    def kind_and_name(self, type_id: int) -> tuple[int, str]:
        """(KIND_*, name) of type ``type_id``, without building its model (or its members')."""
        return _btf_raw.kind_and_name(self._live(), type_id)

    def datasec_vars(self, type_id: int) -> dict[str, tuple[int, int, int]]:
        """name -> (byte offset, size, type id) of the variables of DATASEC ``type_id``.

        Read from the raw records, without building a model of every
        variable: a tool sets or reads only a few of its globals.
        """
        return _btf_raw.datasec_vars(self._live(), type_id)

    def int_layout(self, type_id: int) -> tuple[int, bool] | None:
        """(size, signed) when ``type_id`` is an integer, bool or enum (through
        typedefs and qualifiers), else None; no model is built."""
        return _btf_raw.int_layout(self._live(), type_id)

    def type(self, type_id: int) -> BtfType:
        """The model of type ``type_id`` (cached; recursive types are cut at pointers)."""
        t = self._types.get(type_id)
        if t is None:
            t = self._build(type_id)
            self._types[type_id] = t
        return t

    def _build(self, tid: int) -> BtfType:
        kind, name, vlen, kflag, size_type, extra = _btf_raw.raw_type(self._live(), tid)
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

    def named_structs(self) -> Iterator[Struct]:
        """Every named struct and union, in BTF order (only their models are built)."""
        ptr = self._live()
        for tid in range(1, _libbpf.btf_type_count(ptr)):
            kind, name = _btf_raw.kind_and_name(ptr, tid)
            if name and kind in (KIND_STRUCT, KIND_UNION):
                t = self.type(tid)
                if isinstance(t, Struct):
                    yield t

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
    """value -> name of a kernel enum, e.g. ``enum_names("skb_drop_reason")``.

    Remembered per kernel build-id (:mod:`lcc.kernelcache`), so that a tool's
    next start reads a few hundred bytes rather than parsing the kernel's
    whole BTF.  Raises :class:`BtfError` when the kernel's BTF has no such
    enum (also remembered) or cannot be read.
    """
    from . import kernelcache
    fname = f"enum-{name}" if name.isidentifier() and name.isascii() else None
    raw = kernelcache.read(fname) if fname else None
    if raw is not None:
        names = _parse_enum_cache(raw)
        if names is not None:
            if names is _ABSENT:
                raise BtfError(f"enum {name} is not in this BTF")
            return names  # type: ignore[return-value]
    try:
        names = dict(Btf.vmlinux().enum(name).names)
    except BtfError as e:
        if fname and "is not in this BTF" in e.message:
            kernelcache.write(fname, b"absent\n")
        raise
    if fname:
        kernelcache.write(fname, "".join(f"{v}\t{n}\n" for v, n in names.items()).encode())
    return names


_ABSENT = object()


def _parse_enum_cache(raw: bytes) -> dict[int, str] | object | None:
    """What :func:`enum_names` wrote: value TAB name lines, or ``absent``; None when
    the file is damaged (it is then read from the BTF and written again)."""
    try:
        text = raw.decode("ascii")
        if not text.endswith("\n"):
            return None
        if text == "absent\n":
            return _ABSENT
        out = {}
        for line in text.splitlines():
            v, n = line.split("\t")
            if not n.isidentifier():
                return None
            out[int(v)] = n
        return out
    except (UnicodeDecodeError, ValueError):
        return None


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
