"""Symbols: kernel addresses to names, and user-space function names to file offsets.

- :class:`KernelSymbols` reads ``/proc/kallsyms`` once (lazily, cached for the
  process, re-read by :meth:`KernelSymbols.refresh` or :func:`refresh`) and
  turns kernel addresses (stack traces, ``kfree_skb`` locations) into
  ``func+0x1a`` text.  The table is a few flat arrays (about 5 MB for
  120k symbols, not one Python object per symbol), and the table of
  ``/proc/kallsyms`` is kept in the user's cache directory for the rest of
  the boot (while the loaded modules stay the same), so the next process
  maps it in rather than parsing the file again.
- :class:`ElfSymbols` reads an ELF file's symbol tables and gives the file
  offset of a function, which is what a uprobe attaches to.
- :func:`resolve_binary` finds an executable or a shared library by name
  (``PATH``, then the ``ldconfig`` cache), as uprobe targets are usually named.

Errors are lcc errors: :class:`SymbolsUnavailable` when there is nothing to
read (kernel addresses hidden by ``kptr_restrict``, not an ELF file),
:class:`SymbolNotFound` (also a ``KeyError``) for a missing ELF symbol,
:class:`BinaryNotFound` (also a ``FileNotFoundError``) for a missing binary.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import glob
import mmap
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import threading
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from lcc._files import write_atomic
from lcc.errors import BinaryNotFound, LccError, SymbolNotFound, SymbolsUnavailable

__all__ = [
    "BinaryNotFound",
    "ElfSymbol",
    "ElfSymbols",
    "KernelSymbols",
    "Symbol",
    "SymbolNotFound",
    "SymbolsUnavailable",
    "kernel_symbols",
    "refresh",
    "resolve_binary",
]

KALLSYMS = "/proc/kallsyms"

_U64_MASK = (1 << 64) - 1


# --------------------------------------------------------------------------
# Kernel symbols


class Symbol(NamedTuple):
    """A resolved kernel address: ``offset`` bytes into ``name`` (of ``module``, if any)."""

    name: str
    offset: int
    module: str | None = None

    def __str__(self) -> str:
        text = f"{self.name}+{self.offset:#x}"
        return f"{text} [{self.module}]" if self.module else text


class _KallsymsTable:
    """Parsed kallsyms in a few flat arrays rather than ~120k Python objects.

    Every symbol (aliases included) in address order: ``addrs`` (u64),
    ``offs`` (u32, name ``i`` is ``blob[offs[i]:offs[i + 1]]``), ``mods``
    (u16, index into ``modules``; 0 is the core kernel), and ``order``
    (u32): symbol indices sorted by name, for lookups by name.  Among
    aliases of one address the first listed is the name shown (the kernel
    lists the best name first, as ``%pS`` prints it); a name listed at
    several addresses answers with the lowest.
    """

    __slots__ = ("addrs", "offs", "mods", "order", "blob", "modules", "distinct")

    def __init__(self, addrs: Any, offs: Any, mods: Any, order: Any, blob: Any,
                 modules: list[str | None], distinct: int | None = None) -> None:
        # arrays when parsed; memoryviews of the mapped cache file when read from it
        self.addrs = addrs
        self.offs = offs
        self.mods = mods
        self.order = order
        self.blob = blob
        self.modules = modules
        self.distinct = _count_distinct(addrs) if distinct is None else distinct

    def name(self, i: int) -> str:
        return bytes(self.blob[self.offs[i]:self.offs[i + 1]]).decode("utf-8", "replace")

    def module(self, i: int) -> str | None:
        m = self.mods[i]
        return self.modules[m] if m < len(self.modules) else None

    def resolve(self, addr: int) -> tuple[int, int] | None:
        """(index of the symbol ``addr`` falls in, its address), or None below all."""
        i = bisect.bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        base = self.addrs[i]
        return bisect.bisect_left(self.addrs, base, 0, i), base

    def address_of(self, name: str) -> int | None:
        key = name.encode("utf-8", "replace")
        blob, offs, order = self.blob, self.offs, self.order
        j = bisect.bisect_left(order, key, key=lambda k: bytes(blob[offs[k]:offs[k + 1]]))
        if j < len(order):
            k = order[j]
            if bytes(blob[offs[k]:offs[k + 1]]) == key:
                return self.addrs[k]
        return None

    # -- the per-boot cache file -------------------------------------------------

    def to_bytes(self, stamp: bytes) -> bytes:
        mods = "\n".join(m or "" for m in self.modules).encode()
        head = _CACHE_HEAD.pack(_CACHE_MAGIC, len(self.addrs), len(self.blob), len(mods),
                                self.distinct, stamp)
        return b"".join([head, self.addrs.tobytes(), self.offs.tobytes(), self.order.tobytes(),
                         self.mods.tobytes(), bytes(self.blob), mods])

    @classmethod
    def from_bytes(cls, data: Any, stamp: bytes) -> _KallsymsTable | None:
        """The table a cache file's bytes (or its mapping) hold, without copying
        them; None when it is damaged or stale."""
        if len(data) < _CACHE_HEAD.size:
            return None
        magic, n, blob_len, mods_len, distinct, got = _CACHE_HEAD.unpack_from(data)
        if magic != _CACHE_MAGIC or got != stamp or \
                len(data) != _CACHE_HEAD.size + n * 18 + 4 + blob_len + mods_len:
            return None
        view = memoryview(data)
        pos = _CACHE_HEAD.size

        def take(code: str, count: int, size: int) -> memoryview:
            nonlocal pos
            part = view[pos:pos + count * size].cast(code)
            pos += count * size
            return part
        addrs, offs = take("Q", n, 8), take("I", n + 1, 4)
        order, mods = take("I", n, 4), take("H", n, 2)
        blob = view[pos:pos + blob_len]
        modules = [m or None for m in bytes(view[pos + blob_len:]).decode().split("\n")]
        if offs[n] != blob_len:
            return None
        return cls(addrs, offs, mods, order, blob, modules, distinct)


_CACHE_MAGIC = b"LCCKSYM2"
# magic, symbols, name bytes, module bytes, distinct addresses, stamp (56 bytes:
# the u64 addresses that follow stay aligned)
_CACHE_HEAD = struct.Struct("=8sIIII32s")
assert array("Q").itemsize == 8 and array("I").itemsize == 4 and array("H").itemsize == 2


def _count_distinct(addrs: array) -> int:
    n, last = 0, None
    for a in addrs:
        if a != last:
            n += 1
            last = a
    return n


# Symbol types that do not name code or data at their address: absolute
# values (per-CPU offsets and the like) and undefined symbols.
_SKIPPED_TYPES = frozenset(b"aAUu")

_KPTR_HINT = (
    "run as root, or let other users see kernel addresses with "
    "sysctl kernel.kptr_restrict=0 kernel.perf_event_paranoid=1"
)


def _kallsyms_lines(path: str) -> Iterator[bytes]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SymbolsUnavailable(
            f"cannot read kernel symbols from {path}: {e.strerror or e}",
            hint="lcc needs /proc mounted to symbolize kernel addresses",
        ) from e
    with f:
        yield from f


def _parse_kallsyms(path: str) -> _KallsymsTable:
    """Read and index a kallsyms file; raises SymbolsUnavailable if it has no usable address.

    Built column by column (no tuple per line), to keep the first process of
    a boot, which parses, from holding the whole file as Python objects.
    """
    addrs, mods = array("Q"), array("H")
    names: list[bytes] = []
    module_ids: dict[bytes, int] = {b"": 0}
    seen_any = False
    for line in _kallsyms_lines(path):
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            addr = int(parts[0], 16)
        except ValueError:
            continue
        seen_any = True
        if len(parts[1]) != 1 or parts[1][0] in _SKIPPED_TYPES or addr == 0:
            continue
        addrs.append(addr)
        names.append(parts[2])
        mods.append(module_ids.setdefault(parts[3].strip(b"[]") if len(parts) > 3 else b"",
                                          len(module_ids)))
    if not names:
        if seen_any:
            raise SymbolsUnavailable(
                f"kernel symbol addresses in {path} are hidden (all zero)", hint=_KPTR_HINT
            )
        raise SymbolsUnavailable(f"no kernel symbols in {path}")
    # By address; sorted() is stable, so aliases keep the file's order (the
    # kernel's best name first).
    perm = sorted(range(len(names)), key=addrs.__getitem__)
    addrs = array("Q", [addrs[i] for i in perm])
    mods = array("H", [mods[i] for i in perm])
    names = [names[i] for i in perm]
    del perm
    offs = array("I", [0])
    pos = 0
    for n in names:
        pos += len(n)
        offs.append(pos)
    order = array("I", sorted(range(len(names)), key=names.__getitem__))
    modules = [m.decode("utf-8", "replace") or None for m in module_ids]
    return _KallsymsTable(addrs, offs, mods, order, b"".join(names), modules)


def _stamp() -> bytes | None:
    """What a cached table of /proc/kallsyms must match: this boot and the loaded
    modules (their names and addresses); None when there is no boot id."""
    from . import kernelcache
    boot = kernelcache.boot_id()
    if boot is None:
        return None
    try:
        with open("/proc/modules", "rb") as f:
            mods = f.read()
    except OSError:
        mods = b""
    return kernelcache.sha256(boot.encode() + b"\0" + mods).digest()


def _cached_kallsyms(*, fresh: bool = False) -> _KallsymsTable:
    """The table of /proc/kallsyms, from the per-boot cache file when it is current
    (``<cache root>/kallsyms-<uid>``, mode 0600: it holds kernel addresses), else
    (or when ``fresh``) parsed and written there.

    The file is current for this boot and this set of loaded modules; the
    symbols of BPF programs (``[bpf]``) in it are those loaded when it was
    written.  :func:`refresh` makes the next lookup read kallsyms again.
    """
    from . import kernelcache
    stamp = _stamp()
    path = os.path.join(kernelcache.cache_root(), f"kallsyms-{os.geteuid()}")
    if stamp is not None and not fresh:
        try:
            with open(path, "rb") as f:
                # Mapped, not read: the pages are shared and loaded as lookups touch them.
                data = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            table = _KallsymsTable.from_bytes(data, stamp)
            if table is not None:
                return table
        except (OSError, ValueError):
            pass
    table = _parse_kallsyms(KALLSYMS)
    if stamp is not None:
        with contextlib.suppress(OSError):
            write_atomic(path, table.to_bytes(stamp), mode=0o600)
    return table


_tables: dict[str, _KallsymsTable] = {}
_tables_lock = threading.Lock()
_fresh = False  # set by refresh(): the next table of /proc/kallsyms is read anew


def _table_for(path: str, *, reload: bool = False) -> _KallsymsTable:
    with _tables_lock:
        table = None if reload else _tables.get(path)
        if table is None:
            if path == KALLSYMS:
                global _fresh
                table = _cached_kallsyms(fresh=reload or _fresh)
                _fresh = False
            else:
                table = _parse_kallsyms(path)
            _tables[path] = table
        return table


def format_stack(fmt: Callable[[int], str], addresses: Iterable[int]) -> list[str]:
    """``fmt`` of each address of a stack (innermost first), up to the first 0:
    stack map values are zero-padded to their full depth."""
    out = []
    for addr in addresses:
        if not addr:
            break
        out.append(fmt(addr))
    return out


class KernelSymbols:
    """Kernel address -> symbol lookups over ``/proc/kallsyms`` (or a file in that format).

    The file is read on first use and the parsed table is shared by every
    instance for the same path for the life of the process; call
    :meth:`refresh` after modules are loaded or unloaded.  Reading requires
    kernel addresses to be visible (root, or ``kernel.kptr_restrict=0``);
    otherwise every lookup raises :class:`SymbolsUnavailable`.

    An address past the end of a function resolves to the nearest symbol
    below it, as in BCC; an address below every symbol is unknown.
    """

    def __init__(self, path: str | os.PathLike[str] = KALLSYMS) -> None:
        self.path = os.fspath(path)

    def _table(self) -> _KallsymsTable:
        return _table_for(self.path)

    def refresh(self) -> None:
        """Re-read the file now, replacing the shared cached table.

        Raises SymbolsUnavailable as the first read would.
        """
        _table_for(self.path, reload=True)

    def __len__(self) -> int:
        """Number of distinct symbol addresses. Raises SymbolsUnavailable."""
        return self._table().distinct

    def resolve(self, addr: int) -> Symbol | None:
        """Return the symbol *addr* falls in, or None if it lies below every symbol.

        *addr* may be given signed (as an s64 decoded from BPF); it is taken
        modulo 2**64.  Raises SymbolsUnavailable when kallsyms cannot be used.
        """
        addr = int(addr) & _U64_MASK
        table = self._table()
        found = table.resolve(addr) if addr else None
        if found is None:
            return None
        i, base = found
        return Symbol(table.name(i), addr - base, table.module(i))

    def format(self, addr: int) -> str:
        """Return ``func+0x1a`` (``func+0x1a [module]`` for a module) or ``0x<addr>`` if unknown.

        Raises SymbolsUnavailable when kallsyms cannot be used.
        """
        sym = self.resolve(addr)
        return str(sym) if sym is not None else f"{int(addr) & _U64_MASK:#x}"

    def symbolize(self, addresses: Iterable[int]) -> list[str]:
        """Format a stack trace (innermost first), stopping at the first 0 entry.

        Stack map values are zero-padded to their full depth; the padding is
        not part of the trace.  Raises SymbolsUnavailable as :meth:`format`.
        """
        return format_stack(self.format, addresses)

    def address_of(self, name: str) -> int | None:
        """Return the address of the kernel symbol *name* (aliases included), or None.

        Raises SymbolsUnavailable when kallsyms cannot be used.
        """
        return self._table().address_of(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.address_of(name) is not None


_default_lock = threading.Lock()
_default: KernelSymbols | None = None


def kernel_symbols() -> KernelSymbols:
    """Return the process-wide :class:`KernelSymbols` for ``/proc/kallsyms``."""
    global _default
    with _default_lock:
        if _default is None:
            _default = KernelSymbols()
        return _default


def refresh() -> None:
    """Forget every cached kallsyms table; the next lookup re-reads its file."""
    global _fresh
    with _tables_lock:
        _tables.clear()
        _fresh = True


# --------------------------------------------------------------------------
# User-space ELF symbols


@dataclass(frozen=True)
class ElfSymbol:
    """A function symbol of an ELF file.

    ``value`` is the symbol's virtual address as linked (``st_value``);
    ``offset`` is where its code sits in the file, the number a uprobe takes.
    """

    name: str
    value: int
    size: int
    offset: int
    binding: str  # "STB_GLOBAL", "STB_WEAK", "STB_LOCAL"


_FUNC_TYPES = frozenset({"STT_FUNC", "STT_GNU_IFUNC"})
_BINDING_RANK = {"STB_GLOBAL": 0, "STB_WEAK": 1, "STB_GNU_UNIQUE": 1}


class ElfSymbols:
    """Function symbols of one ELF file (executable, shared library or object).

    The file is read once, at construction, from ``.symtab`` and ``.dynsym``
    (either may be missing; stripped libraries keep ``.dynsym``).  Requires
    pyelftools (LccError if it is missing).  Raises :class:`BinaryNotFound` if
    *path* does not exist and :class:`SymbolsUnavailable` if it is not an ELF file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        try:
            from elftools.common.exceptions import ELFError
            from elftools.elf.elffile import ELFFile
        except ImportError as e:
            raise LccError(
                "reading ELF symbols needs pyelftools", hint="pip install pyelftools"
            ) from e

        self.path = Path(path)
        self._symbols: dict[str, list[ElfSymbol]] = {}
        self._by_offset: tuple[list[int], list[ElfSymbol]] | None = None  # see symbol_at
        try:
            f = open(self.path, "rb")
        except FileNotFoundError as e:
            raise BinaryNotFound(f"no such file: {self.path}") from e
        except OSError as e:
            raise SymbolsUnavailable(f"cannot read {self.path}: {e.strerror or e}") from e
        with f:
            try:
                elf = ELFFile(f)
                self.elf_type: str = elf.header["e_type"]
                self._index(elf)
            except ELFError as e:
                raise SymbolsUnavailable(f"{self.path} is not a readable ELF file: {e}") from e

    @property
    def is_pie(self) -> bool:
        """True for position-independent files (ET_DYN: PIE executables and shared libraries)."""
        return self.elf_type == "ET_DYN"

    def _index(self, elf) -> None:  # elf: elftools ELFFile
        loads = [
            (seg["p_vaddr"], seg["p_filesz"], seg["p_offset"])
            for seg in elf.iter_segments()
            if seg["p_type"] == "PT_LOAD"
        ]
        sections = {i: (s["sh_addr"], s["sh_offset"]) for i, s in enumerate(elf.iter_sections())}
        for table_name in (".symtab", ".dynsym"):
            table = elf.get_section_by_name(table_name)
            if table is None or not hasattr(table, "iter_symbols"):
                continue
            for sym in table.iter_symbols():
                info = sym["st_info"]
                shndx = sym["st_shndx"]
                if info["type"] not in _FUNC_TYPES or not sym.name or shndx == "SHN_UNDEF":
                    continue
                value = sym["st_value"]
                offset = self._file_offset(value, shndx, loads, sections)
                if offset is None:
                    continue
                entry = ElfSymbol(sym.name, value, sym["st_size"], offset, info["bind"])
                found = self._symbols.setdefault(sym.name, [])
                if all(e.value != value for e in found):
                    found.append(entry)

    @staticmethod
    def _file_offset(
        value: int,
        shndx: int | str,
        loads: list[tuple[int, int, int]],
        sections: dict[int, tuple[int, int]],
    ) -> int | None:
        """Map a symbol value to a file offset: through the PT_LOAD segment that holds it,
        or, in a relocatable object (no segments), through its section."""
        for vaddr, filesz, offset in loads:
            if vaddr <= value < vaddr + filesz:
                return value - vaddr + offset
        if not loads and isinstance(shndx, int) and shndx in sections:
            sh_addr, sh_offset = sections[shndx]
            return value - sh_addr + sh_offset
        return None

    def lookup(self, name: str) -> ElfSymbol:
        """Return the function symbol *name* (a ``@VERSION`` suffix is ignored).

        When several definitions share the name at different addresses, a
        global one wins over weak ones, which win over local ones.  Raises
        SymbolNotFound if there is none, LccError if the choice is ambiguous
        (several local functions of that name).
        """
        base = name.split("@", 1)[0]
        found = self._symbols.get(base)
        if not found:
            raise SymbolNotFound(base, self.path)
        best = min(_BINDING_RANK.get(e.binding, 2) for e in found)
        chosen = [e for e in found if _BINDING_RANK.get(e.binding, 2) == best]
        if len(chosen) > 1:
            where = ", ".join(f"{e.value:#x}" for e in chosen)
            raise LccError(
                f"symbol '{base}' is defined {len(chosen)} times in {self.path} ({where})",
                hint="attach by file offset instead of by name",
            )
        return chosen[0]

    def offset(self, name: str) -> int:
        """Return the file offset of function *name*, for a uprobe; raises as :meth:`lookup`."""
        return self.lookup(name).offset

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.split("@", 1)[0] in self._symbols

    def symbol_at(self, offset: int) -> tuple[ElfSymbol, int] | None:
        """The function whose code holds file offset *offset*, and how far into it.

        The reverse of :meth:`offset`, for user stack frames: a symbol with a
        size holds ``[offset, offset + size)``; one without (hand-written
        assembly) holds everything up to the next symbol.  None when no
        function holds it.
        """
        index = self._by_offset
        if index is None:
            syms = sorted((e for found in self._symbols.values() for e in found),
                          key=lambda e: (e.offset, _BINDING_RANK.get(e.binding, 2)))
            index = self._by_offset = ([e.offset for e in syms], syms)
        offsets, syms = index
        i = bisect.bisect_right(offsets, offset) - 1
        if i < 0:
            return None
        start = offsets[i]
        aliases = syms[bisect.bisect_left(offsets, start):i + 1]  # best binding first
        for e in aliases:
            if e.size and offset < start + e.size:
                return e, offset - start
        unsized = [e for e in aliases if not e.size]
        return (unsized[0], offset - start) if unsized else None

    def names(self) -> Iterator[str]:
        """Iterate over the function names defined in the file."""
        return iter(self._symbols)


# --------------------------------------------------------------------------
# Finding binaries

# ldconfig's tag for this process's ABI, e.g. "libc6,x86-64".
_LDCONFIG_ARCH_TAGS = {
    "x86_64": "x86-64",
    "aarch64": "AArch64",
    "riscv64": "riscv64",
    "ppc64le": "64bit",
    "ppc64": "64bit",
    "s390x": "64bit",
    "mips64": "64bit",
    "loongarch64": "64bit",
}

_LDCONFIG_LINE = re.compile(r"^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$")


@functools.lru_cache(maxsize=1)
def _ldconfig_entries() -> tuple[tuple[str, str, str], ...]:
    """``(soname, flags, path)`` for each library in the ldconfig cache; () without ldconfig."""
    exe = shutil.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if exe is None:
        return ()
    try:
        out = subprocess.run(
            [exe, "-p"], capture_output=True, text=True, check=False, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    entries = []
    for line in out.splitlines():
        m = _LDCONFIG_LINE.match(line)
        if m:
            entries.append((m.group(1), m.group(2), m.group(3)))
    return tuple(entries)


def _library_candidates(name: str) -> list[str]:
    """Names to look for, best first: ``libc.so.6`` as is; ``libc.so`` (matching
    ``libc.so.*``); ``libc`` and ``c`` as ``libc.so``."""
    if ".so" in name:
        return [name]
    if name.startswith("lib"):
        return [name, f"{name}.so"]
    return [name, f"lib{name}.so"]


def _matches(soname: str, wanted: str) -> bool:
    return soname == wanted or (wanted.endswith(".so") and soname.startswith(wanted + "."))


def _find_library(name: str) -> Path | None:
    tag = _LDCONFIG_ARCH_TAGS.get(platform.machine(), "")
    entries = _ldconfig_entries()
    for wanted in _library_candidates(name):
        hits = [(flags, path) for soname, flags, path in entries if _matches(soname, wanted)]
        if hits:
            # Prefer this ABI's copy (lib64 over lib32 on a 64-bit system).
            hits.sort(key=lambda h: 0 if tag and tag in h[0] else 1)
            return Path(hits[0][1])
    multiarch = getattr(sys.implementation, "_multiarch", "")
    dirs = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else []
    dirs += ["/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    for wanted in _library_candidates(name):
        for d in dirs:
            base = Path(d)
            if not base.is_dir():
                continue
            exact = base / wanted
            if exact.is_file():
                return exact
            if wanted.endswith(".so"):
                versioned = sorted(base.glob(f"{glob.escape(wanted)}.*"))
                if versioned:
                    return versioned[0]
    return None


def resolve_binary(name: str | os.PathLike[str]) -> Path:
    """Find the executable or shared library a uprobe should attach to.

    A name with a ``/`` is a path and must exist.  Otherwise the name is
    looked up on ``PATH`` (``bash``), then as a library in the ``ldconfig``
    cache and the standard library directories: ``libc.so.6`` exactly,
    ``libc.so`` or ``c`` as the first ``libc.so.*`` (this ABI's copy
    preferred).  Returns the path found (symlinks are not resolved).
    Raises BinaryNotFound when nothing matches.
    """
    text = os.fspath(name)
    if not text:
        raise BinaryNotFound("empty binary name")
    if "/" in text:
        path = Path(text)
        if path.is_file():
            return path.absolute()
        raise BinaryNotFound(f"no such file: {text}")
    exe = shutil.which(text)
    if exe is not None:
        return Path(exe)
    lib = _find_library(text)
    if lib is not None:
        return lib
    raise BinaryNotFound(
        f"cannot find '{text}' on PATH or in the library search path",
        hint="give the full path to the binary or library",
    )
