"""A summary of a BPF object file: its programs and its maps.

``summarize(obj)`` reads the ELF with pyelftools and returns::

    {"programs": [{"name": "on_getpid", "section": "tracepoint/syscalls/sys_enter_getpid"}],
     "maps": [{"name": "counts", "section": ".maps"}]}

Programs are global functions in executable sections other than ``.text``
(libbpf's rule); maps are the objects in ``.maps`` (BTF-defined) or the
legacy ``maps`` section.  Both lists are in symbol-table order.
"""

from __future__ import annotations

import io

from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

__all__ = ["summarize"]

_SHF_EXECINSTR = 0x4
_MAP_SECTIONS = (".maps", "maps")


def summarize(obj: bytes) -> dict[str, list[dict[str, str]]]:
    """Programs and maps of ``obj``; raises ``ValueError`` if it is not an ELF object."""
    try:
        elf = ELFFile(io.BytesIO(obj))
        sections = list(elf.iter_sections())
    except Exception as exc:  # pyelftools raises its own error types
        raise ValueError(f"not an ELF object: {exc}") from None
    names = [s.name for s in sections]
    programs: list[dict[str, str]] = []
    maps: list[dict[str, str]] = []
    for symtab in sections:
        if not isinstance(symtab, SymbolTableSection):
            continue
        for sym in symtab.iter_symbols():
            shndx = sym["st_shndx"]
            if not isinstance(shndx, int) or shndx >= len(sections):
                continue
            sec = sections[shndx]
            sec_name = names[shndx]
            kind = sym["st_info"]["type"]
            bind = sym["st_info"]["bind"]
            if (kind == "STT_FUNC" and bind == "STB_GLOBAL"
                    and sec["sh_flags"] & _SHF_EXECINSTR and sec_name != ".text"):
                programs.append({"name": sym.name, "section": sec_name})
            elif sec_name in _MAP_SECTIONS and kind == "STT_OBJECT" and sym.name:
                maps.append({"name": sym.name, "section": sec_name})
    return {"programs": programs, "maps": maps}
