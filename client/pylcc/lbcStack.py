"""pyLCC's stack helpers on lcc: kernel stack names and user stack symbols.

``getKStacks(maps, stack_id)`` names the functions of a kernel stack (an
``LBC_STACK`` map and an id from ``bpf_get_stackid``); ``ClbcUstack(pid,
addrs).dumpStacks()`` names the frames of a user stack taken in process
``pid`` (``USER_STACKID_FLAGS``), as ``"function + 0x1a"``.  Neither raises
for a missing stack: an id that is an error code, or that the map no longer
holds, gives an empty list, as callbacks need.
"""

from __future__ import annotations

from lcc.procsyms import ProcessSymbols

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lcc.maps import StackTraceMap

__all__ = ["ClbcUstack", "getKStacks"]


def getKStacks(maps: StackTraceMap, stack_id: int, elfSym: Any = None,  # noqa: N802,N803
               sLen: int = -1) -> list[str]:  # noqa: N803
    """The function names of kernel stack ``stack_id``, innermost first (the first
    ``sLen`` of them when ``sLen >= 0``); [] for a missing stack.

    ``elfSym`` is pyLCC's kernel symbol table (anything with
    ``ksymSearch(addr) -> (name, ...)``); without it lcc reads ``/proc/kallsyms``.
    """
    addrs = maps.getArr(stack_id)
    if not addrs:
        return []
    if sLen >= 0:
        addrs = addrs[:sLen]
    if elfSym is not None:
        return [elfSym.ksymSearch(a)[0] for a in addrs]
    from lcc.symbols import SymbolsUnavailable, kernel_symbols
    syms = kernel_symbols()
    names = []
    for a in addrs:
        try:
            sym = syms.resolve(a)
        except SymbolsUnavailable:
            sym = None
        names.append(sym.name if sym is not None else f"{a:#x}")
    return names


class ClbcUstack:
    """pyLCC: the frames of a user stack ``addrs`` taken in process ``pid``.

    The process's mappings are read when it is made (the process must still
    be running); binaries are parsed once per lcc process
    (:class:`lcc.procsyms.ProcessSymbols`).
    """

    def __init__(self, pid: int, addrs: list[int] | None) -> None:
        self._pid = pid
        self._addrs = list(addrs or [])
        try:
            self._syms: ProcessSymbols | None = ProcessSymbols(pid)
        except (ProcessLookupError, PermissionError):
            self._syms = None  # gone (or not ours): addresses stay hex

    def dumpStacks(self) -> list[str]:  # noqa: N802
        """``"function + 0x1a"`` per frame, innermost first, up to the first zero
        address; an address no symbol names reads as hex."""
        lines = []
        for addr in self._addrs:
            if not addr:
                break
            sym = self._syms.resolve(addr) if self._syms is not None else None
            lines.append(f"{sym.name} + {sym.offset:#x}" if sym is not None else f"{addr:#x}")
        return lines
