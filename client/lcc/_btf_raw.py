"""BTF type records read through libbpf as plain Python data, for :mod:`lcc.btf`.

libbpf hands out each type as a pointer to its ``struct btf_type``
(linux/btf.h): u32 name_off, u32 info (vlen | kind << 24 | kflag << 31),
u32 size or type.  What follows it depends on the kind: one number, one
record, or vlen records (whose first field may be a name offset).  These
functions read those bytes (through :mod:`lcc._libbpf`, the one place for
ctypes) and look names up; building the type model is :mod:`lcc.btf`'s job.
Each takes the ``struct btf *`` and a type id.
"""

from __future__ import annotations

import struct
import sys

from . import _libbpf
from .errors import from_errno

_BTF_TYPE = struct.Struct("=III")
_NUMBER, _RECORD, _RECORDS, _NAMED_RECORDS = range(4)
_BTF_KIND_EXTRA = {
    1: (struct.Struct("=I"), _NUMBER),             # INT: the encoding word
    3: (struct.Struct("=III"), _RECORD),           # ARRAY: type, index_type, nelems
    4: (struct.Struct("=III"), _NAMED_RECORDS),    # STRUCT: name_off, type, offset
    5: (struct.Struct("=III"), _NAMED_RECORDS),    # UNION
    6: (struct.Struct("=Ii"), _NAMED_RECORDS),     # ENUM: name_off, val (s32)
    13: (struct.Struct("=II"), _NAMED_RECORDS),    # FUNC_PROTO: name_off, type
    14: (struct.Struct("=I"), _NUMBER),            # VAR: linkage
    15: (struct.Struct("=III"), _RECORDS),         # DATASEC: type, offset, size
    17: (struct.Struct("=i"), _NUMBER),            # DECL_TAG: component_idx
    19: (struct.Struct("=III"), _NAMED_RECORDS),   # ENUM64: name_off, val_lo32, val_hi32
}
_SECINFO = _BTF_KIND_EXTRA[15][0]
_KIND_INT, _KIND_ENUM, _KIND_VAR, _KIND_ENUM64 = 1, 6, 14, 19

_read = _libbpf.read_memory
_cstr = _libbpf.cstr


def _header(lb: _libbpf.Library, btf: int, type_id: int) -> tuple[int, int, int, int]:
    """(address, name_off, info, size_or_type) of one type record."""
    addr = lb.btf__type_by_id(btf, type_id)
    if not addr:
        raise from_errno(_libbpf.errno_or(2), f"reading BTF type {type_id}")
    return (addr, *_BTF_TYPE.unpack(_read(addr, _BTF_TYPE.size)))


def raw_type(btf: int, type_id: int) -> tuple[int, str, int, bool, int, list]:
    """One type record: (kind, name, vlen, kflag, size_or_type, extra).

    ``extra`` is the list of trailing records as tuples of their fields,
    names already looked up (for INT, VAR and DECL_TAG a one-element list of
    the number).
    """
    lb = _libbpf.lib()
    addr, name_off, info, size_type = _header(lb, btf, type_id)
    kind = (info >> 24) & 0x1F
    vlen = info & 0xFFFF
    name = _cstr(lb.btf__name_by_offset(btf, name_off)) if name_off else ""
    extra: list = []
    spec = _BTF_KIND_EXTRA.get(kind)
    if spec is not None:
        rec, shape = spec
        after = addr + _BTF_TYPE.size
        if shape == _NUMBER:
            extra = [rec.unpack(_read(after, rec.size))[0]]
        elif shape == _RECORD:
            extra = [rec.unpack(_read(after, rec.size))]
        else:
            rows = rec.iter_unpack(_read(after, rec.size * vlen))
            if shape == _NAMED_RECORDS:
                extra = [(_cstr(lb.btf__name_by_offset(btf, r[0])) if r[0] else "", *r[1:])
                         for r in rows]
            else:
                extra = list(rows)
    return kind, name, vlen, bool(info >> 31), size_type, extra


def kind_and_name(btf: int, type_id: int) -> tuple[int, str]:
    """(kind, name) of one type, its trailing records left unread."""
    lb = _libbpf.lib()
    _addr, name_off, info, _size_type = _header(lb, btf, type_id)
    return (info >> 24) & 0x1F, _cstr(lb.btf__name_by_offset(btf, name_off)) if name_off else ""


def datasec_vars(btf: int, type_id: int) -> dict[str, tuple[int, int, int]]:
    """name -> (offset, size, type id) of the variables of DATASEC ``type_id``."""
    lb = _libbpf.lib()
    addr, _name_off, info, _size = _header(lb, btf, type_id)
    out: dict[str, tuple[int, int, int]] = {}
    records = _read(addr + _BTF_TYPE.size, _SECINFO.size * (info & 0xFFFF))
    for var_id, offset, size in _SECINFO.iter_unpack(records):
        _vaddr, name_off, vinfo, var_type = _header(lb, btf, var_id)
        if (vinfo >> 24) & 0x1F == _KIND_VAR:
            out[_cstr(lb.btf__name_by_offset(btf, name_off))] = (offset, size, var_type)
    return out


def int_layout(btf: int, type_id: int) -> tuple[int, bool] | None:
    """(size, signed) of an integer, bool or enum type, typedefs and qualifiers
    resolved (by libbpf); None for any other kind."""
    lb = _libbpf.lib()
    rid = lb.btf__resolve_type(btf, type_id)
    if rid < 0:
        return None
    addr, _name_off, info, size = _header(lb, btf, rid)
    kind = (info >> 24) & 0x1F
    if kind == _KIND_INT:  # the encoding word: signed is bit 24, bool bit 26
        enc = int.from_bytes(_read(addr + _BTF_TYPE.size, 4), sys.byteorder)
        return size, (enc >> 24) & 5 == 1
    if kind in (_KIND_ENUM, _KIND_ENUM64):  # kflag: signed
        return size, bool(info >> 31)
    return None
