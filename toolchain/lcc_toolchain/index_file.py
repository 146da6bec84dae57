"""The saved vmlinux.h index: one binary file, mapped, read only where used.

Indexing vmlinux.h takes about a second, so ``prune.VmlinuxIndex`` keeps its
index beside the header.  A program's cut touches a few hundred of the
header's ~15,000 declarations, so the file is laid out to be opened in a
couple of milliseconds and read lazily: the name tables (declaration keys,
enumerators, typedefs) are loaded whole, as they are looked up by name; the
declarations (their text and what they refer to) and the header's full list
of identifiers are decoded only when asked for.

Layout (integers in the byte order named by the header)::

    b"LCCVIX\\x00\\x03"  u32 length  JSON header  sections...

The JSON header holds the format, the byte order, the sha256 of the
vmlinux.h text the index was made from, the preprocessor lines around the
types, the kfunc block's opening, the number of declarations and, per
section, its [offset, length] counted from the end of the header.  Sections: ``keys``/``key_index``
(declaration key -> index, "\\0"-separated and u32), ``enum``/``enum_index``
(enumerator -> index), ``typedefs``, ``identifiers`` ("\\0"-separated),
``bounds`` (u32: n+1 offsets into ``meta``, then n+1 into ``text``), ``meta``
(per declaration, JSON ``[by_value, by_pointer, members, kfunc]``) and
``text`` (per declaration, UTF-8).

``read`` raises ``ValueError`` for a file that is not such an index, was
made from other text, or whose tables point outside it; a declaration that
cannot be decoded raises ``ValueError`` when it is first used.
"""

from __future__ import annotations

import json
import mmap
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FORMAT", "Decoded", "LazyDecls", "encode", "read"]

FORMAT = 3
MAGIC = b"LCCVIX\x00\x03"
#: The index of ``vmlinux.h`` is saved as ``vmlinux.h`` + this.
SUFFIX = ".index"


@dataclass
class Decoded:
    """What ``read`` returns: the index's tables, declarations decoded on use."""

    lead: list[str]
    trail: list[str]
    kfunc_head: str
    by_key: dict[str, int]
    enumerator: dict[str, int]
    typedefs: frozenset[str]
    decls: LazyDecls
    identifiers: Callable[[], list[str]]  # every identifier of the header, read on call


def encode(*, stamp: str, lead: list[str], trail: list[str], kfunc_head: str,
          by_key: dict[str, int], enumerator: dict[str, int], typedefs: Iterable[str],
          identifiers: Iterable[str], decls: Sequence) -> bytes:
    """The bytes of an index (``decls``: objects with ``text``, ``by_value``,
    ``by_pointer``, ``members``, ``kfunc``); callers publish them atomically."""
    metas = [json.dumps([sorted(d.by_value), sorted(d.by_pointer),
                         {k: sorted(v) for k, v in d.members.items()}, bool(d.kfunc)],
                        separators=(",", ":")).encode() for d in decls]
    texts = [d.text.encode() for d in decls]
    bounds = array("I", [0])
    for m in metas:
        bounds.append(bounds[-1] + len(m))
    bounds.append(0)
    for t in texts:
        bounds.append(bounds[-1] + len(t))
    parts = {
        "keys": "\0".join(by_key).encode(),
        "key_index": array("I", by_key.values()).tobytes(),
        "enum": "\0".join(enumerator).encode(),
        "enum_index": array("I", enumerator.values()).tobytes(),
        "typedefs": "\0".join(sorted(typedefs)).encode(),
        "identifiers": "\0".join(sorted(identifiers)).encode(),
        "bounds": bounds.tobytes(),
        "meta": b"".join(metas),
        "text": b"".join(texts),
    }
    sections, offset = {}, 0
    for name, data in parts.items():  # offsets count from the end of the header
        sections[name] = [offset, len(data)]
        offset += len(data)
    header = json.dumps({"format": FORMAT, "byteorder": sys.byteorder, "sha256": stamp,
                         "lead": lead, "trail": trail, "kfunc_head": kfunc_head,
                         "count": len(texts), "sections": sections}).encode()
    return b"".join([MAGIC, len(header).to_bytes(4, sys.byteorder), header, *parts.values()])


def read(path: Path, stamp: str) -> Decoded:
    """The index saved at ``path`` for vmlinux.h text whose sha256 is ``stamp``.

    Raises ``OSError`` (unreadable) or ``ValueError`` (not an index of this
    format, made from other text, or inconsistent)."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size < len(MAGIC) + 4:
            raise ValueError("vmlinux.h index is truncated")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if mm[:len(MAGIC)] != MAGIC:
        raise ValueError("not a vmlinux.h index of this format")
    hlen = int.from_bytes(mm[len(MAGIC):len(MAGIC) + 4], sys.byteorder)
    try:
        head = json.loads(mm[len(MAGIC) + 4:len(MAGIC) + 4 + hlen])
        if head["format"] != FORMAT or head["byteorder"] != sys.byteorder:
            raise ValueError("vmlinux.h index of another format")
        if head["sha256"] != stamp:
            raise ValueError("vmlinux.h index made from other text")
        count = int(head["count"])
        sections = {name: (int(off), int(n)) for name, (off, n) in head["sections"].items()}
        lead, trail = [str(x) for x in head["lead"]], [str(x) for x in head["trail"]]
        kfunc_head = str(head["kfunc_head"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"vmlinux.h index header is damaged: {exc!r}") from None
    base = len(MAGIC) + 4 + hlen
    sections = {name: (base + off, n) for name, (off, n) in sections.items()}
    for off, n in sections.values():
        if off < base or n < 0 or off + n > size:
            raise ValueError("vmlinux.h index section lies outside the file")

    def raw(name: str) -> bytes:
        off, n = sections[name]
        return mm[off:off + n]

    def ints(name: str) -> array:
        out = array("I")
        out.frombytes(raw(name))
        return out

    def names(name: str) -> list[str]:
        data = raw(name)
        return data.decode().split("\0") if data else []

    try:
        by_key = dict(zip(names("keys"), ints("key_index"), strict=True))
        enumerator = dict(zip(names("enum"), ints("enum_index"), strict=True))
        typedefs = frozenset(names("typedefs"))
        bounds = ints("bounds")
        meta_at, text_at = sections["meta"], sections["text"]
    except (KeyError, UnicodeDecodeError) as exc:
        raise ValueError(f"vmlinux.h index is damaged: {exc!r}") from None
    if len(bounds) != 2 * (count + 1):
        raise ValueError("vmlinux.h index has the wrong number of declarations")
    if (by_key and max(by_key.values()) >= count) or \
            (enumerator and max(enumerator.values()) >= count):
        raise ValueError("vmlinux.h index refers past its declarations")
    if bounds[count] != meta_at[1] or bounds[2 * count + 1] != text_at[1]:
        raise ValueError("vmlinux.h index declarations do not fill their sections")
    decls = LazyDecls(mm, bounds, count, meta_at[0], text_at[0])
    return Decoded(lead=lead, trail=trail, kfunc_head=kfunc_head, by_key=by_key,
                   enumerator=enumerator, typedefs=typedefs, decls=decls,
                   identifiers=lambda: names("identifiers"))


class LazyDecls(Sequence):
    """The declarations of a mapped index, each decoded on first use."""

    def __init__(self, mm: mmap.mmap, bounds: array, count: int, meta_off: int,
                 text_off: int) -> None:
        self._mm, self._bounds, self._count = mm, bounds, count
        self._meta_off, self._text_off = meta_off, text_off
        self._cache: list = [None] * count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._count))]
        decl = self._cache[i]
        if decl is None:
            decl = self._cache[i] = self._decode(i)
        return decl

    def _decode(self, i: int):
        from lcc_toolchain.prune import _Decl  # the in-memory form (no import cycle at load)
        n, b, mm = self._count, self._bounds, self._mm
        m0, m1 = b[i], b[i + 1]
        t0, t1 = b[n + 1 + i], b[n + 2 + i]
        if not (m0 <= m1 and t0 <= t1):
            raise ValueError(f"vmlinux.h index declaration {i} is damaged")
        try:
            by_value, by_pointer, members, kfunc = json.loads(
                mm[self._meta_off + m0:self._meta_off + m1])
            text = mm[self._text_off + t0:self._text_off + t1].decode()
            return _Decl(text=text, by_value=set(by_value), by_pointer=set(by_pointer),
                         members={k: set(v) for k, v in members.items()}, kfunc=bool(kfunc))
        except (ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"vmlinux.h index declaration {i} is damaged: {exc!r}") from None

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(self._count))
