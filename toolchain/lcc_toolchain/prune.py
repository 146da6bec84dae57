"""A vmlinux.h cut down to the kernel types one program can use.

Most of a cold compile of a program that touches ``struct sock`` is clang
building debug info: every struct complete in the translation unit and
reachable through pointers from the ones the program uses (thousands, from
``struct sock`` alone) gets a full DWARF definition, of which the BPF backend
keeps a few hundred in BTF.  A header in which the types the program cannot
reach by value are only forward-declared makes the compile several times
faster and the object a fraction of the size, with the same code, the same
CO-RE relocations and the same types for every map, global and program
argument.

``VmlinuxIndex`` splits bpftool's vmlinux.h into its top-level declarations
(bpftool separates them with blank lines) and records what each one refers
to.  ``keep(identifiers, ...)`` chooses, and ``render`` writes in their original
order:

- every struct, union, enum and typedef the program names, and the enum of
  every enumerator it names;
- every type those contain by value (members, array elements, typedef
  targets), transitively;
- for a member the program names (``sk->sk_socket``, ``BPF_CORE_READ(task,
  mm, ...)``), the types that member points to, so that a chain of accesses
  through pointers stays complete;
- the typedefs, enums and enumerators libbpf's headers and lbc.h use, and the
  records their macros dereference (``struct pt_regs``);
- the kfunc declarations (``lcc_toolchain.kfuncs``) of the kfuncs the program
  names, in their guarded block;

and forward-declares every other struct or union the kept text mentions.

A type the program needs but that was left incomplete is a compile error,
which the toolchain answers by compiling against the whole header.  A
program could only mean something else with a cut header (``bpf_core_type_exists``
of a type it never spells out) if a type name it uses were invisible to this
scan: ``usable(files)`` refuses bundles that paste tokens (``##``), and the
toolchain scans the values of ``-D`` defines along with the files.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lcc_toolchain import index_file, kfuncs
from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.locks import KeyedLocks

log = logging.getLogger("lcc_toolchain.prune")

__all__ = ["Cutter", "CutterCache", "FixedHeaders", "VmlinuxIndex", "identifiers", "usable"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RECORD_REF = re.compile(r"\b(struct|union)\s+([A-Za-z_][A-Za-z0-9_]*)")
_ENUM_REF = re.compile(r"\benum\s+([A-Za-z_][A-Za-z0-9_]*)")
_RECORD_DEF = re.compile(r"(struct|union)\s+([A-Za-z_]\w*)\s*\{")
_ENUM_DEF = re.compile(r"enum(?:\s+([A-Za-z_]\w*))?\s*\{")
_ENUMERATOR = re.compile(r"^\t([A-Za-z_]\w*)\s*=", re.M)
_FN_PTR_NAME = re.compile(r"\(\s*\*\s*(?:(?:const|volatile)\s+)*([A-Za-z_]\w*)\s*\)\s*[(\[]")
_FN_TYPE_NAME = re.compile(r"([A-Za-z_]\w*)\s*\((?!\s*\*)")
_TRAILING_NAME = re.compile(r"[A-Za-z_]\w*$")
_BITFIELD = re.compile(r":\s*\d+$")
_C_WORDS = frozenset("""struct union enum typedef const volatile signed unsigned char short
    int long float double void _Bool bool __attribute__ packed aligned""".split())


def _decl_name(line: str) -> str | None:
    """The name a declaration line ``... name[4]: 3;`` declares, if any."""
    s = line.rstrip()
    if not s.endswith(";"):
        return None
    s = s[:-1].rstrip()
    if s[-1:].isdigit() and ":" in s:
        s = _BITFIELD.sub("", s).rstrip()
    while s.endswith("]"):
        s = s[:s.rfind("[")].rstrip()
    m = _TRAILING_NAME.search(s, max(0, len(s) - 128))
    return m.group(0) if m else None


def identifiers(text: str) -> set[str]:
    """Every C identifier in ``text`` (comments and strings included: an extra
    name only keeps an extra type)."""
    return set(_IDENT.findall(text))


def usable(files: Mapping[str, str]) -> bool:
    """Whether a bundle can be compiled against a cut header: none of its files
    pastes tokens (``##`` could build a type name the scan cannot see)."""
    return not any("##" in text for text in files.values())


_DEFINE = re.compile(r"^[ \t]*#[ \t]*define(?:.*\\\n)*.*$", re.M)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include(_next)?[ \t]*[<"]([^>"]+)[>"]', re.M)


@dataclass(frozen=True)
class FixedHeaders:
    """What the headers every program includes (lbc.h and the libbpf headers it
    pulls in) need of vmlinux.h: identifiers, and the records their macros
    dereference."""

    files: frozenset[str]  # base names, which a bundle file must not shadow
    names: frozenset[str]
    macro_text: str

    @classmethod
    def scan(cls, top: Path, search: Iterable[Path]) -> FixedHeaders:
        """Read ``top`` and, recursively, the headers it includes that exist
        under ``search`` (vmlinux.h is skipped: it is what gets cut).  An
        ``#include_next`` (lcc's headers that complete libbpf's) is the same
        name found in another place than the including file."""
        search = [Path(p) for p in search]
        seen: set[Path] = set()
        texts: list[str] = []
        todo = [Path(top)]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            text = path.read_text(errors="replace")
            texts.append(text)
            for nxt, inc in _INCLUDE.findall(text):
                if inc.endswith("vmlinux.h"):
                    continue
                for base in (path.parent, *search):
                    cand = base / inc
                    if cand.is_file() and not (nxt and cand.resolve() == path.resolve()):
                        todo.append(cand)
                        break
        joined = "\n".join(texts)
        return cls(files=frozenset({p.name for p in seen} | {"vmlinux.h"}),
                   names=frozenset(_IDENT.findall(joined)),
                   macro_text="\n".join(_DEFINE.findall(joined)))


@dataclass
class _Decl:
    """One top-level declaration of vmlinux.h."""

    text: str
    by_value: set[str] = field(default_factory=set)    # keys needed complete
    by_pointer: set[str] = field(default_factory=set)  # record keys behind pointers
    words: set[str] = field(default_factory=set)        # identifiers (typedef uses)
    members: dict[str, set[str]] = field(default_factory=dict)  # member -> record keys
    kfunc: bool = False  # an extern declaration in the kfunc block


class _ScannedOnUse(Sequence):
    """The declarations of a vmlinux.h being indexed, each scanned for what
    it refers to when first read (two threads may both scan one: the same
    result, the last one kept)."""

    def __init__(self, pending: list[tuple[str, str, bool]], typedefs: frozenset[str]) -> None:
        self._pending = pending
        self._typedefs = typedefs
        self._done: list[_Decl | None] = [None] * len(pending)

    def __len__(self) -> int:
        return len(self._pending)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        decl = self._done[i]
        if decl is None:
            text, body, kfunc = self._pending[i]
            decl = _Decl(text=text, kfunc=kfunc)
            VmlinuxIndex._scan(decl, body)
            # typedef names are known once the whole header was split
            decl.by_value.update(decl.words & self._typedefs)
            decl.words = set()
            self._done[i] = decl
        return decl


class VmlinuxIndex:
    """The declarations of one vmlinux.h and what each refers to."""

    def __init__(self, text: str) -> None:
        """Split ``text`` into declarations and key them; what each refers to
        is read when ``keep`` or ``render`` first looks at it (a cut reads a
        small part of the header; ``index_file.encode`` reads all of it)."""
        self._pending: list[tuple[str, str, bool]] = []  # (text, body, kfunc)
        self._lead: list[str] = []   # preprocessor lines before the first type
        self._trail: list[str] = []  # and after the last
        self._by_key: dict[str, int] = {}  # "struct sock", "enum x", "u32", kfunc name
        self._enumerator: dict[str, int] = {}
        self._kfunc_head = ""  # opening lines of the kfunc block, if there is one
        typedef_names: set[str] = set()
        in_kfuncs = False
        for raw in text.split("\n\n"):
            chunk = raw.strip("\n")
            if not chunk:
                continue
            if chunk.startswith(kfuncs.BEGIN) and not self._trail and not in_kfuncs:
                self._kfunc_head, in_kfuncs = chunk, True
            elif in_kfuncs:
                in_kfuncs = chunk != kfuncs.END
                if in_kfuncs:
                    self._parse_kfunc(chunk, typedef_names)
            elif chunk.startswith("#"):
                (self._trail if self._pending else self._lead).append(chunk)
            elif self._trail:
                raise ValueError("vmlinux.h has preprocessor lines between its types")
            else:
                self._parse(chunk, typedef_names)
        self._typedefs = frozenset(typedef_names)
        self._decls = _ScannedOnUse(self._pending, self._typedefs)
        self._identifiers: frozenset[str] | None = None
        self._load_identifiers = lambda: _IDENT.findall(text)

    @property
    def identifiers(self) -> frozenset[str]:
        """Every identifier of the whole header (a -D of one could change it);
        read from a saved index on first use only."""
        if self._identifiers is None:
            self._identifiers = frozenset(self._load_identifiers())
        return self._identifiers

    @classmethod
    def load(cls, vmlinux_h: Path, *, save: bool = True) -> VmlinuxIndex:
        """The index of ``vmlinux_h``, read from ``<vmlinux_h>.index`` (see
        ``lcc_toolchain.index_file``) when that was made from the same text,
        else built and, with ``save``, saved there (which scans every
        declaration; without, only those a cut reads are).  Raises
        ``ValueError`` when vmlinux.h is not laid out as bpftool writes it."""
        vmlinux_h = Path(vmlinux_h)
        raw = vmlinux_h.read_bytes()
        stamp = hashlib.sha256(raw).hexdigest()
        saved = vmlinux_h.with_name(vmlinux_h.name + index_file.SUFFIX)
        try:
            return cls._from_saved(index_file.read(saved, stamp))
        except (OSError, ValueError) as exc:
            if not isinstance(exc, FileNotFoundError):
                log.info("indexing %s again: %s", vmlinux_h, exc)
        with _no_gc():  # tens of thousands of small containers, none of them cyclic
            index = cls(raw.decode())
            if not save:
                return index
            try:
                data = index_file.encode(
                    stamp=stamp, lead=index._lead, trail=index._trail,
                    kfunc_head=index._kfunc_head, by_key=index._by_key,
                    enumerator=index._enumerator, typedefs=index._typedefs,
                    identifiers=index.identifiers, decls=index._decls)
                write_atomic(saved, data, mode=0o644)
            except OSError as exc:
                log.warning("could not save the vmlinux.h index: %s", exc)
        # The JSON index of earlier releases is not read again.
        with contextlib.suppress(OSError):
            vmlinux_h.with_name(vmlinux_h.name + ".index.json").unlink()
        return index

    @staticmethod
    def discard_saved(vmlinux_h: Path) -> bool:
        """Remove the index saved beside ``vmlinux_h`` (found damaged in use),
        so that the next ``load`` makes it again; False if there was none."""
        try:
            Path(vmlinux_h).with_name(Path(vmlinux_h).name + index_file.SUFFIX).unlink()
        except FileNotFoundError:
            return False
        return True

    @classmethod
    def _from_saved(cls, saved: index_file.Decoded) -> VmlinuxIndex:
        self = cls.__new__(cls)
        self._lead, self._trail = saved.lead, saved.trail
        self._kfunc_head = saved.kfunc_head
        self._typedefs = saved.typedefs
        self._by_key, self._enumerator = saved.by_key, saved.enumerator
        self._decls = saved.decls
        self._identifiers, self._load_identifiers = None, saved.identifiers
        return self

    def _parse(self, chunk: str, typedef_names: set[str]) -> None:
        first, _, _ = chunk.partition("\n")
        if re.fullmatch(r"(struct|union) \w+;", first):
            return  # a forward declaration: render writes its own
        index = len(self._pending)
        body = chunk
        if (m := _RECORD_DEF.match(first)) is not None:
            key = f"{m.group(1)} {m.group(2)}"
            body = chunk[m.end():]
        elif (m := _ENUM_DEF.match(first)) is not None:
            key = f"enum {m.group(1)}" if m.group(1) else f"enum #{index}"
            for name in _ENUMERATOR.findall(chunk):
                self._enumerator.setdefault(name, index)
        elif first.startswith("typedef"):
            last = chunk.rsplit("\n", 1)[-1]
            single = "\n" not in chunk
            m = ((_FN_PTR_NAME.search(first) or _FN_TYPE_NAME.search(first))
                 if single and "(" in first else None)
            key = m.group(1) if m else _decl_name(last)
            if key is None:
                raise ValueError(f"vmlinux.h: cannot read the typedef {first!r}")
            typedef_names.add(key)
        else:
            key = f"#{index}"
        self._by_key.setdefault(key, index)
        self._pending.append((chunk, body, False))

    def _parse_kfunc(self, chunk: str, typedef_names: set[str]) -> None:
        """One ``extern <prototype> __weak __ksym;`` of the kfunc block, kept
        under the function's name."""
        m = _FN_TYPE_NAME.search(chunk)
        if not chunk.startswith("extern ") or m is None:
            raise ValueError(f"vmlinux.h: unexpected text in the kfunc block: {chunk[:60]!r}")
        self._by_key.setdefault(m.group(1), len(self._pending))
        self._pending.append((chunk, chunk, True))

    @staticmethod
    def _scan(decl: _Decl, body: str) -> None:
        for line in body.split("\n"):
            refs: set[str] = set()
            depth_at = _paren_depths(line)
            for m in _RECORD_REF.finditer(line):
                key = f"{m.group(1)} {m.group(2)}"
                refs.add(key)
                # behind a pointer, or a parameter of a function pointer: a
                # forward declaration is enough
                if line[m.end():].lstrip().startswith("*") or depth_at(m.start()) > 0:
                    decl.by_pointer.add(key)
                else:
                    decl.by_value.add(key)
            for m in _ENUM_REF.finditer(line):
                decl.by_value.add(f"enum {m.group(1)}")
            words = set(_IDENT.findall(line)) - _C_WORDS
            decl.words.update(words)
            if not line.startswith("\t"):
                continue
            m = _FN_PTR_NAME.search(line) if "(" in line else None
            name = m.group(1) if m else _decl_name(line)
            if name is not None:
                decl.members.setdefault(name, set()).update(refs | (words - {name}))

    def header_seeds(self, header_names: Iterable[str] = (),
                     header_records: Iterable[str] = ()) -> frozenset[int]:
        """The declarations ``keep`` starts from for ``header_names`` and
        ``header_records`` (see there), to pass as its ``seeds``: looking up
        the fixed headers' few thousand names once, not for every program."""
        out: set[int] = set()
        for name in header_names:
            out.add(self._enumerator.get(name))
            out.add(self._by_key.get(f"enum {name}"))
            if name in self._typedefs:
                out.add(self._by_key[name])
        for key in header_records:
            out.add(self._by_key.get(key))
        out.discard(None)
        return frozenset(out)

    def keep(self, names: Iterable[str], header_names: Iterable[str] = (),
             header_records: Iterable[str] = (), *,
             seeds: Iterable[int] = ()) -> frozenset[int]:
        """The declarations a program that uses ``names`` needs.

        ``header_names`` are identifiers of the fixed headers (lbc.h, libbpf's):
        their typedefs, enums and enumerators are kept; ``header_records``
        ("struct pt_regs") are records those headers' macros dereference;
        ``seeds``: ``header_seeds()`` of both, computed before.
        """
        names = set(names)
        keep: set[int] = set()
        todo: list[int] = []

        def add(i: int | None) -> None:
            if i is not None and i not in keep:
                keep.add(i)
                todo.append(i)

        for name in names:
            for key in (f"struct {name}", f"union {name}", f"enum {name}", name):
                add(self._by_key.get(key))
            add(self._enumerator.get(name))
        for i in self.header_seeds(header_names, header_records) | frozenset(seeds):
            add(i)
        while todo:
            decl = self._decls[todo.pop()]
            for key in decl.by_value:
                add(self._by_key.get(key))
            for member, keys in decl.members.items():
                if member not in names:
                    continue
                for key in keys:  # the program reaches through this member
                    i = self._by_key.get(key)
                    add(i)
                    if i is not None and key in self._typedefs:  # a typedef of a pointer
                        for ptr in self._decls[i].by_pointer:
                            add(self._by_key.get(ptr))
        return frozenset(keep)

    def render(self, keep: Iterable[int], *, whole_file: bool = True) -> str:
        """Header text of the declarations ``keep`` in their original order, after
        forward declarations of every struct and union they mention.

        ``whole_file`` keeps vmlinux.h's include guard; without it the text is
        meant to follow another cut (only the preserve_access_index pragma is
        kept around it)."""
        keep = sorted(keep)
        mentioned: set[str] = set()
        for i in keep:
            mentioned |= self._decls[i].by_pointer | self._decls[i].by_value
        fwd = sorted(k for k in mentioned if k.startswith(("struct ", "union ")))
        lead, trail = self._lead, self._trail
        if not whole_file:
            lead = [c for c in lead if "pragma" in c]
            trail = [c for c in trail if "pragma" in c]
        types = [self._decls[i].text for i in keep if not self._decls[i].kfunc]
        funcs = [self._decls[i].text for i in keep if self._decls[i].kfunc]
        if funcs:
            funcs = [self._kfunc_head, *funcs, kfuncs.END]
        parts = [*lead, *(f"{k};" for k in fwd), *types, *funcs, *trail]
        return "\n\n".join(parts) + "\n"

    def record_keys(self, text: str) -> set[str]:
        """``struct X``/``union X`` keys that ``text`` names and this header defines."""
        return {f"{k} {n}" for k, n in _RECORD_REF.findall(text)
                if f"{k} {n}" in self._by_key}


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _paren_depths(line: str):
    """depth(pos): how many parentheses are open at ``pos`` of ``line``."""
    if "(" not in line:
        return lambda pos: 0
    marks: list[tuple[int, int]] = []
    depth = 0
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
            marks.append((i, depth))
        elif ch == ")":
            depth -= 1
            marks.append((i, depth))

    def at(pos: int) -> int:
        d = 0
        for i, v in marks:
            if i >= pos:
                break
            d = v
        return d
    return at


class _EitherNames:
    """``name in`` the fixed headers' names or the whole vmlinux.h's (read
    only when a define asks)."""

    def __init__(self, names: frozenset[str], index: VmlinuxIndex) -> None:
        self._names, self._index = names, index

    def __contains__(self, name: object) -> bool:
        return name in self._names or name in self._index.identifiers


class Cutter:
    """Cuts one vmlinux.h for programs that include ``fixed``: a base header
    (what the fixed headers need; built into the precompiled lbc.h) and, per
    program, the declarations it needs beyond the base."""

    def __init__(self, index: VmlinuxIndex, fixed: FixedHeaders) -> None:
        self.index = index
        self.fixed = fixed
        self._records = index.record_keys(fixed.macro_text)
        self._seeds = index.header_seeds(fixed.names, self._records)
        self._base = index.keep((), seeds=self._seeds)
        self._base_text = index.render(self._base)
        #: every identifier of the headers a program is compiled after
        #: (a -D of one could change what they mean)
        self.header_identifiers = _EitherNames(fixed.names, index)

    def base_header(self) -> str:
        """vmlinux.h text for the fixed headers alone."""
        return self._base_text

    def extra_header(self, names: Iterable[str]) -> str:
        """What a program using ``names`` needs beyond ``base_header()``, to be
        included right after lbc.h."""
        keep = self.index.keep(names, seeds=self._seeds)
        return self.index.render(keep - self._base, whole_file=False)


class CutterCache:
    """One ``Cutter`` per (vmlinux.h, fixed headers), built once and the last
    few kept in memory."""

    def __init__(self, keep: int = 4) -> None:
        self._locks = KeyedLocks()
        self._guard = threading.Lock()
        self._items: OrderedDict[tuple, Cutter] = OrderedDict()
        self._keep = keep

    def get(self, vmlinux_h: Path, fixed: FixedHeaders, *, save: bool = True) -> Cutter:
        """Raises ``ValueError`` when vmlinux.h is not laid out as bpftool writes it.
        ``save=False``: an index built here is not saved (``VmlinuxIndex.load``)."""
        key = (str(vmlinux_h), fixed)
        with self._locks.hold(str(vmlinux_h)):
            with self._guard:
                cutter = self._items.get(key)
                if cutter is not None:
                    self._items.move_to_end(key)
                    return cutter
            try:
                cutter = Cutter(VmlinuxIndex.load(vmlinux_h, save=save), fixed)
            except ValueError as exc:
                # A saved index damaged past its tables: index the text again
                # (a cut must not depend on the state of a cache file).
                if not VmlinuxIndex.discard_saved(vmlinux_h):
                    raise
                log.warning("indexing %s again: %s", vmlinux_h, exc)
                cutter = Cutter(VmlinuxIndex.load(vmlinux_h, save=save), fixed)
            with self._guard:
                self._items[key] = cutter
                while len(self._items) > self._keep:
                    self._items.popitem(last=False)
        return cutter

    def forget(self, vmlinux_h: Path) -> None:
        """Drop the cutters of ``vmlinux_h`` and its saved index, which was found
        damaged while cutting: the next ``get`` indexes the text again."""
        with self._locks.hold(str(vmlinux_h)):
            with self._guard:
                for key in [k for k in self._items if k[0] == str(vmlinux_h)]:
                    del self._items[key]
            VmlinuxIndex.discard_saved(vmlinux_h)
