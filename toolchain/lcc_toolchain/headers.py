"""Where the headers of a compile live, found without importing the toolchain.

A cached build fingerprints lcc's headers at every tool start; this module is
all it imports of the toolchain package for that.  It answers:

- ``include_dir()``: lcc's own headers (``lbc.h`` and the ``bpf/`` headers
  that complete older libbpf ones, see ``lbc_include/bpf/``);
- ``header_files()``: every header under it, for fingerprints and identities;
- ``multiarch_dir(arch)``: the Debian/Ubuntu multiarch directory
  (``/usr/include/x86_64-linux-gnu``) that holds ``asm/`` for UAPI headers;
- ``FLAGS_VERSION``: bumped whenever the compile flags or the generated
  headers change, so caches keyed by the toolchain identity turn over.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ToolMissing

__all__ = ["FLAGS_VERSION", "MULTIARCH_TRIPLETS", "header_files", "include_dir",
           "multiarch_dir"]

#: 3: UAPI include path (multiarch), libbpf compat headers, kfunc declarations.
FLAGS_VERSION = "3"

#: Kernel machine names (``uname -m``, as ``validation.ARCHES``) -> the GNU
#: triplet Debian and Ubuntu name their multiarch include directory after.
MULTIARCH_TRIPLETS: dict[str, str] = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "ppc64le": "powerpc64le-linux-gnu",
    "ppc64": "powerpc64-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "loongarch64": "loongarch64-linux-gnu",
    "mips64": "mips64-linux-gnuabi64",
}


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


def header_files() -> list[Path]:
    """Every header lcc provides (``lbc.h`` first, then the rest by path)."""
    inc = include_dir()
    rest = sorted(p for p in inc.rglob("*.h") if p.name != "lbc.h" or p.parent != inc)
    return [inc / "lbc.h", *rest]


def multiarch_dir(arch: str, usr_include: Path = Path("/usr/include")) -> Path | None:
    """``<usr_include>/<triplet>`` for ``arch`` when it exists, else None.

    UAPI headers (``linux/types.h``) include ``asm/types.h``, which Debian and
    Ubuntu keep there; other distributions keep ``asm/`` in ``usr_include``
    itself, which clang searches anyway.  A cross compile needs the target's
    directory (``linux-libc-dev:<arch>``), never the host's: ``asm/`` headers
    differ between architectures.
    """
    triplet = MULTIARCH_TRIPLETS.get(arch)
    if triplet is None:
        return None
    path = Path(usr_include) / triplet
    return path if (path / "asm").is_dir() else None
