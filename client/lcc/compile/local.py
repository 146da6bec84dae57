"""The local backend: the embedded toolchain compiles here, against this kernel's BTF.

It is the compile service's own toolchain (``lcc_toolchain``) run in
process, so a machine with clang, bpftool and kernel BTF needs no service.
It works in ``<cache root>/toolchain`` (vmlinux.h, precompiled headers, its
identity), else in a private temporary directory.

The toolchain's identity (clang/bpftool versions, header hashes) is part of
every cache key; it is remembered on disk against a cheap fingerprint (paths
and stats of what it hashes, ``lcc_toolchain.identity``) so that neither a
cache hit nor a compile runs ``clang --version`` while they stay the same.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

from lcc_toolchain import errors as _tc_errors

from ..errors import BtfError, CompileError, LccError, ToolchainMissing
from . import kernel as _kernel
from .artifact import Artifact
from .bundle import Bundle
from .cache import private_tmp_dir
from .config import ClientConfig

__all__ = ["LocalBackend", "find_tool", "work_dir"]

log = logging.getLogger(__name__)


def _toolchain_class():
    """``lcc_toolchain.toolchain.Toolchain``, imported on first use only: the
    module is large, and a cache hit never needs it."""
    try:
        from lcc_toolchain.toolchain import Toolchain
    except ImportError as e:  # pragma: no cover - packaging problem
        raise ToolchainMissing(f"the embedded toolchain is unavailable: {e}") from None
    return Toolchain


# The embedded toolchain's errors -> what lcc users see (see lcc.errors).
_FROM_TOOLCHAIN: dict[type, type[LccError]] = {
    _tc_errors.ToolMissing: ToolchainMissing,
    _tc_errors.BtfUnavailable: BtfError,
    _tc_errors.InvalidRequest: LccError,
}


def _from_toolchain(exc: _tc_errors.ToolchainError) -> LccError:
    """The lcc error for an error of the embedded toolchain: the same message,
    hint and (for a failed compile) diagnostics and log; ``LccError`` for any
    other (e.g. the sandbox could not be set up)."""
    if isinstance(exc, _tc_errors.CompileFailed):
        return CompileError(exc.message, exc.diagnostics, exc.log, hint=exc.hint)
    cls = next((mine for theirs, mine in _FROM_TOOLCHAIN.items() if isinstance(exc, theirs)),
               LccError)
    return cls(exc.message, hint=exc.hint)


def find_tool(name: str) -> str | None:
    """The path of program ``name`` on PATH (or in the sbin directories), or None."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def work_dir(cache_root: Path) -> Path:
    """The embedded toolchain's work directory: ``<cache_root>/toolchain``, else
    (not writable) a private one in the temporary directory."""
    d = cache_root / "toolchain"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError as e:
        fallback = private_tmp_dir("lcc-toolchain")
        log.warning("cannot use %s (%s); the local toolchain works in %s", d, e.strerror,
                    fallback)
        return fallback


class LocalBackend:
    """clang here, for this machine's kernel only (a :class:`lcc.compile.Backend`).

    ``work_dir``: where the toolchain keeps vmlinux.h and its header caches
    (see :func:`work_dir`).  ``clang``/``bpftool``: the programs to run;
    ``sandbox=False`` runs clang without Landlock confinement.
    """

    name = "local"
    origin = "local"

    def __init__(self, work_dir: Path, *, clang: str = "clang", bpftool: str = "bpftool",
                 sandbox: bool = True) -> None:
        self.work_dir = Path(work_dir)
        self.clang = clang
        self.bpftool = bpftool
        self.sandbox = sandbox

    @classmethod
    def from_config(cls, config: ClientConfig, work_dir: Path) -> LocalBackend:
        return cls(work_dir, clang=config.clang, bpftool=config.bpftool, sandbox=config.sandbox)

    def __repr__(self) -> str:
        return f"LocalBackend({str(self.work_dir)!r})"

    def key_part(self) -> dict:
        """``{"local": identity}``; raises :class:`ToolchainMissing` without clang."""
        return {"local": _local_identity(str(self.work_dir), self.clang, self.bpftool,
                                         self.sandbox)}

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        me = _kernel.this_kernel()
        if (kernel, arch) != (me.release, me.arch):
            raise LccError(f"the local toolchain compiles for this machine's kernel "
                           f"({me.release}, {me.arch}) only, not {kernel} ({arch})",
                           hint="compile through a service that has that kernel's BTF: "
                                "--server URL or LCC_SERVER")
        if not me.has_btf:
            raise BtfError(f"this kernel has no {_kernel.KERNEL_BTF}, which the local "
                           "toolchain needs to generate vmlinux.h",
                           hint="compile through a service (LCC_SERVER) that has this "
                                "kernel's BTF, with btf='server'")
        tc = _toolchain(str(self.work_dir), self.clang, self.bpftool, self.sandbox)
        try:
            res = tc.compile(bundle, arch=arch, defines=defines)
            tailored = tc.min_core_btf(res.object) if btf else None
        except _tc_errors.ToolchainError as e:
            raise _from_toolchain(e) from e
        except ValueError as e:
            raise LccError(str(e)) from None
        except OSError as e:
            raise LccError(f"the local toolchain failed in {self.work_dir}: {e}") from None
        return Artifact(object=res.object, digest=res.digest, btf=tailored,
                        warnings=list(res.warnings), toolchain=dict(res.toolchain),
                        origin=self.origin)


@functools.lru_cache(maxsize=4)
def _toolchain(work_dir: str, clang: str, bpftool: str, sandbox: bool):
    """The embedded toolchain for these settings (one per process), which
    compiles once or a few times before the process exits (``one_off``: a
    fresh vmlinux.h is not indexed or precompiled for later here)."""
    return _toolchain_class()(clang=clang, bpftool=bpftool, work_dir=Path(work_dir),
                              sandbox=sandbox, one_off=True)


def _local_identity(work_dir: str, clang: str, bpftool: str, sandbox: bool) -> dict:
    """``Toolchain.identity()``: read from the work directory while nothing it
    is computed from changed (``lcc_toolchain.identity``), so that a cache hit
    runs no ``clang --version`` and imports no toolchain; else computed by
    the toolchain, which saves it for the next process."""
    from lcc_toolchain.identity import identity_cached
    try:
        identity = identity_cached(clang, Path(work_dir), bpftool=bpftool)
        if identity is not None:
            return identity
        if find_tool(clang) is None:
            raise ToolchainMissing("clang was not found on PATH")
        return _toolchain(work_dir, clang, bpftool, sandbox).identity()
    except _tc_errors.ToolchainError as e:
        raise _from_toolchain(e) from e
