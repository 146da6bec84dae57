"""Where lbc.h lives, found without importing the toolchain.

A cached build fingerprints lbc.h at every tool start; this module is all it
imports of the toolchain package for that.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ToolMissing

__all__ = ["include_dir"]


def include_dir() -> Path:
    """Directory holding lbc.h: ``lcc_toolchain/include`` in a wheel, else the
    repo's ``lbc_include`` (this file is ``toolchain/lcc_toolchain/headers.py``
    there).  Raises ``ToolMissing`` when neither exists."""
    here = Path(__file__).resolve().parent
    for cand in (here / "include", here.parent.parent / "lbc_include"):
        if (cand / "lbc.h").is_file():
            return cand
    raise ToolMissing("lbc.h is missing from this lcc installation",
                      hint="reinstall lcc; its wheel ships lcc_toolchain/include/lbc.h")
