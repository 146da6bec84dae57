"""Precompiled lbc.h (with vmlinux.h and libbpf's headers) for fast compiles.

Parsing the headers is a large part of a BPF compile; a precompiled header
(PCH) of ``lbc.h`` built once per (vmlinux.h, arch, toolchain identity) saves
it: about 0.2 s with the whole vmlinux.h, about 40 ms over the part of it
lbc.h needs (``lcc_toolchain.prune``).  The result must be byte-identical to
compiling without it, so ``reason_not_applicable`` allows the PCH only when
that is certain:

- the main file's first directive (after comments) is ``#include "lbc.h"``,
  so injecting the header before the file changes nothing;
- no bundle file has the name of a header inside the PCH (it could shadow it);
- no ``-D`` name occurs as an identifier in those headers, and none starts
  with ``_`` (the PCH is built without user defines; a define that the
  headers never mention cannot change how they were parsed).

Otherwise the toolchain compiles without the PCH.  ``PchCache`` builds each
PCH once (per key, under a lock, published by an atomic rename), keeps the
last few loaded in memory, and after a failed build lets compiles go without
a PCH for a while instead of retrying on every request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lcc_toolchain.locks import KeyedLocks
from lcc_toolchain.sandbox import Sandbox

__all__ = ["Pch", "PchCache", "reason_headers_differ", "reason_not_applicable", "refused"]

log = logging.getLogger("lcc_toolchain.pch")

_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
# Whitespace, // comments (a backslash continues them onto the next line) and
# /* */ comments, then the include.  The atomic group stops the engine from
# backtracking into a comment to find an include C would not see.  Anything
# this does not match means "no PCH".
_PREAMBLE = re.compile(
    r'\A(?>(?:[ \t\r\n\f\v]+|//(?:[^\n\\]|\\.)*|/\*.*?\*/)*)'
    r'#[ \t]*include[ \t]*(?:"lbc\.h"|<lbc\.h>)[ \t]*(?:\n|//|/\*|\Z)', re.S)


@dataclass(frozen=True)
class Pch:
    """A built PCH: its file, the headers it holds and their identifiers."""

    path: Path
    inputs: tuple[str, ...]
    identifiers: frozenset[str]
    inode: int = 0  # tells a rebuilt file from this one

    @property
    def header_names(self) -> frozenset[str]:
        return frozenset(os.path.basename(p) for p in self.inputs)


def reason_not_applicable(pch: Pch, main: str, files: Mapping[str, str],
                          defines: Mapping[str, str | None]) -> str | None:
    """Why ``pch`` cannot stand in for parsing lbc.h in this bundle, or None."""
    return reason_headers_differ(pch.header_names, pch.identifiers, main, files, defines)


def reason_headers_differ(header_names: Iterable[str], header_identifiers: Container[str],
                          main: str, files: Mapping[str, str],
                          defines: Mapping[str, str | None]) -> str | None:
    """Why lbc.h parsed ahead of the bundle (precompiled, or through
    ``-include``) might not mean what the bundle's own ``#include "lbc.h"``
    means, or None.  ``header_names`` are the base names of the headers
    involved, ``header_identifiers`` every identifier in them."""
    if not _PREAMBLE.match(files[main]):
        return "main file does not start with #include \"lbc.h\""
    names = frozenset(header_names)
    for path in files:
        if path.rsplit("/", 1)[-1] in names:
            return f"bundle file {path} may shadow a precompiled header"
    for name in defines:
        if name.startswith("_") or name in header_identifiers:
            return f"define {name} may change the precompiled headers"
    return None


class PchCache:
    """``<root>/<key>/lbc.pch`` plus the list of its inputs and their identifiers."""

    #: After a failed build, compiles go without a PCH for this long before retrying.
    RETRY_AFTER = 300.0

    def __init__(self, root: Path, sandbox: Sandbox, *, keep: int = 8) -> None:
        self.root = Path(root)
        self._sandbox = sandbox
        self._locks = KeyedLocks()
        self._loaded: OrderedDict[str, Pch] = OrderedDict()
        self._loaded_lock = threading.Lock()
        self._failed: dict[str, float] = {}
        self._keep = keep

    def get(self, key: str, build_argv: Callable[[Path, Path], list[str]],
            read: Iterable[Path]) -> Pch | None:
        """The PCH for ``key``, built with ``build_argv(pch_path, deps_path)`` if
        missing.  Returns None when it cannot be built (compiles go on without)."""
        with self._loaded_lock:
            pch = self._loaded.get(key)
            if pch is not None and not pch.path.is_file():
                # deleted on disk (the service evicted its kernel's derived
                # files): built again below rather than refused by clang
                del self._loaded[key]
                pch = None
            if pch is not None:
                self._loaded.move_to_end(key)
                return pch
            failed_at = self._failed.get(key)
        if failed_at is not None and time.monotonic() - failed_at < self.RETRY_AFTER:
            return None
        with self._locks.hold(key):
            final = self.root / key
            if not (final / "lbc.pch").is_file() and not self._build(final, build_argv, read):
                with self._loaded_lock:
                    self._failed[key] = time.monotonic()
                return None
            pch = self._load(final)
        with self._loaded_lock:
            self._loaded[key] = pch
            while len(self._loaded) > self._keep:
                self._loaded.popitem(last=False)
        return pch

    def drop(self, key: str, pch: Pch) -> None:
        """Forget and delete ``pch``, which clang refused (e.g. a header changed
        on disk); a PCH already rebuilt under ``key`` by another thread stays."""
        with self._locks.hold(key):
            with self._loaded_lock:
                if self._loaded.get(key) is pch:
                    del self._loaded[key]
            try:
                if os.stat(pch.path).st_ino != pch.inode:
                    return
            except FileNotFoundError:
                pass
            trash = Path(tempfile.mkdtemp(prefix=".old-", dir=self.root))
            with contextlib.suppress(OSError):
                os.rename(self.root / key, trash / key)
            shutil.rmtree(trash, ignore_errors=True)

    def _build(self, final: Path, build_argv, read) -> bool:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            done = self._sandbox.run(build_argv(tmp / "lbc.pch", tmp / "deps.d"), cwd=tmp,
                                     read=list(read), write=[tmp])
            if not done.ok:
                log.warning("precompiled header not built, compiling without it: %s",
                            done.exceeded or done.stderr.decode(errors="replace")[-500:])
                return False
            inputs = _parse_depfile((tmp / "deps.d").read_text())
            idents: set[bytes] = set()
            for path in inputs:
                idents.update(_IDENT.findall(Path(path).read_bytes()))
            (tmp / "inputs.txt").write_text("\n".join(inputs) + "\n")
            (tmp / "identifiers.txt").write_bytes(b"\n".join(sorted(idents)) + b"\n")
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / "lbc.pch").is_file():
                    raise
            return True
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _load(final: Path) -> Pch:
        inputs = tuple((final / "inputs.txt").read_text().split())
        idents = frozenset((final / "identifiers.txt").read_text().split())
        return Pch(path=final / "lbc.pch", inputs=inputs, identifiers=idents,
                   inode=os.stat(final / "lbc.pch").st_ino)


def _parse_depfile(text: str) -> list[str]:
    """Prerequisites of a make-style dependency file as written by ``clang -MD``."""
    body = text.replace("\\\n", " ").split(":", 1)[1]
    return [p.replace("\\ ", " ") for p in re.split(r"(?<!\\)\s+", body.strip()) if p]


_REFUSED = re.compile(r"^.*fatal error: .*(precompiled header|PCH file|AST file)", re.M)


def refused(log: str) -> bool:
    """Whether clang's ``log`` says it refused the PCH itself (stale, missing,
    corrupt), as opposed to an error in the program."""
    return _REFUSED.search(log) is not None
