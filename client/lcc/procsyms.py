"""User-space addresses of a process to ``function+0xoff``, for user stack traces.

A user stack from ``bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK)`` holds
addresses in the process's memory.  :class:`ProcessSymbols` reads the
process's executable mappings from ``/proc/PID/maps`` and turns each
address into a file offset in the mapped binary (``addr - start +
file offset of the mapping``), which the binary's ELF symbols
(:class:`lcc.symbols.ElfSymbols`, via pyelftools) name.  File offsets are
used, not addresses, so PIE executables, shared libraries and fixed-address
executables are read the same way.

Binaries are read once per process lifetime of lcc, keyed by device and
inode (a library shared by many processes is parsed once), through
``/proc/PID/root`` so that processes in other mount namespaces (containers)
resolve too.  The maps are read when a :class:`ProcessSymbols` is made:
make a new one for a process that may have loaded libraries since.
"""

from __future__ import annotations

import os
import threading
from typing import NamedTuple

from .errors import LccError
from .symbols import ElfSymbols, format_stack

__all__ = ["ExecMapping", "ProcessSymbols", "UserSymbol", "read_exec_mappings"]

# Binaries kept parsed at most (the least recently used go first).
ELF_CACHE_SIZE = 64

_U64_MASK = (1 << 64) - 1


class ExecMapping(NamedTuple):
    """An executable mapping of a process: ``[start, end)`` maps ``path`` from ``offset`` on."""

    start: int
    end: int
    offset: int
    path: str | None  # None: anonymous memory (JIT code, say)


class UserSymbol(NamedTuple):
    """A resolved user address: ``offset`` bytes into function ``name`` of ``path``."""

    name: str
    offset: int
    path: str

    def __str__(self) -> str:
        return f"{self.name}+{self.offset:#x} [{os.path.basename(self.path)}]"


def read_exec_mappings(pid: int) -> list[ExecMapping]:
    """The executable mappings of ``pid`` from ``/proc/PID/maps``, by address.

    Raises ProcessLookupError when the process does not exist (any more).
    """
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise ProcessLookupError(f"process {pid} does not exist") from None
    out = []
    for line in lines:
        # start-end perms offset dev inode [path]; the path may contain spaces
        parts = line.split(None, 5)
        if len(parts) < 5 or "x" not in parts[1]:
            continue
        lo, _, hi = parts[0].partition("-")
        path = parts[5] if len(parts) > 5 and parts[5].startswith("/") else None
        out.append(ExecMapping(int(lo, 16), int(hi, 16), int(parts[2], 16), path))
    out.sort()
    return out


_cache_lock = threading.Lock()
_elf_cache: dict[tuple[int, int, int], ElfSymbols | None] = {}


def _elf_for(pid: int, path: str) -> ElfSymbols | None:
    """The parsed ELF symbols of ``path`` as process ``pid`` sees it (None if unreadable)."""
    for candidate in (f"/proc/{pid}/root{path}", path):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino, st.st_mtime_ns)
        with _cache_lock:
            if key in _elf_cache:
                _elf_cache[key] = elf = _elf_cache.pop(key)  # most recently used last
                return elf
        try:
            elf = ElfSymbols(candidate)
        except (LccError, OSError):
            elf = None  # not ELF, or unreadable: addresses in it stay hex
        with _cache_lock:
            _elf_cache[key] = elf
            while len(_elf_cache) > ELF_CACHE_SIZE:
                del _elf_cache[next(iter(_elf_cache))]
        return elf
    return None


class ProcessSymbols:
    """Addresses of process ``pid`` to :class:`UserSymbol` (its mappings read now).

    Raises ProcessLookupError when the process does not exist.  Needs
    permission to read the process's maps and binaries (root, or the same
    user); pyelftools reads the ELF files.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.mappings = read_exec_mappings(pid)
        self._starts = [m.start for m in self.mappings]

    def mapping(self, addr: int) -> ExecMapping | None:
        """The executable mapping that holds ``addr``, or None."""
        import bisect
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0 and addr < self.mappings[i].end:
            return self.mappings[i]
        return None

    def resolve(self, addr: int) -> UserSymbol | None:
        """The function that holds ``addr``, or None (anonymous memory, no symbol)."""
        addr = int(addr) & _U64_MASK
        m = self.mapping(addr)
        if m is None or m.path is None:
            return None
        elf = _elf_for(self.pid, m.path)
        if elf is None:
            return None
        found = elf.symbol_at(addr - m.start + m.offset)
        if found is None:
            return None
        sym, off = found
        return UserSymbol(sym.name, off, m.path)

    def format(self, addr: int) -> str:
        """``func+0x1a [binary]``, or the address in hex when nothing names it."""
        sym = self.resolve(addr)
        return str(sym) if sym is not None else f"{int(addr) & _U64_MASK:#x}"

    def symbolize(self, addresses: list[int]) -> list[str]:
        """A user stack (innermost first) as :meth:`format` lines, up to the first 0."""
        return format_stack(self.format, addresses)
