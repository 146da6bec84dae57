"""Where a bundle becomes a BPF object: the one compile entry of the client.

:func:`build` is the only function in the client that leads to clang.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .bundle import Bundle
from .errors import Diagnostic, ToolchainMissing


@dataclass
class Artifact:
    """A compiled object and what came with it."""

    object: bytes
    digest: str
    btf: bytes | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    toolchain: dict = field(default_factory=dict)
    cached: bool = False
    btf_path: str | None = None


def build(bundle: Bundle, *, defines: dict[str, str | None] | None = None,
          server: str | None = None, kernel: str | None = None, arch: str | None = None,
          btf: bool = False, cache: bool = True) -> Artifact:
    """Compile ``bundle`` for this machine (or ``kernel``/``arch``) and return the artifact."""
    try:
        from lcc_server.toolchain import Toolchain
    except ImportError as e:  # pragma: no cover - packaging problem
        raise ToolchainMissing(f"the embedded toolchain is unavailable: {e}") from None
    tc = Toolchain(work_dir=os.path.join(os.path.expanduser("~"), ".cache", "lcc", "toolchain"))
    res = tc.compile(bundle, arch=arch or os.uname().machine, defines=defines or {})
    return Artifact(object=res.object, digest=res.digest, warnings=res.warnings,
                    toolchain=res.toolchain)
