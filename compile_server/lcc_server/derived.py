"""A kernel's derived files as one unit of the disk budget, evicted least recently used.

For each kernel BTF the toolchain derives, under its work directory,
``vmlinux/<btf sha256>.<layout>/`` (vmlinux.h, its index, the cut headers)
and ``pch/<key>/`` (precompiled headers built over that vmlinux.h; its
``inputs.txt`` names it).  ``DerivedFiles`` counts such a set as one ledger
entry, ``kernel:<btf sha256>``, of the artifact store, so derived sets and
compiled objects leave the one budget (``LCC_MAX_ARTIFACT_MB``) in one
least-recently-used order:

- ``in_use(sha)`` wraps a compile: the set is pinned (no process evicts it
  meanwhile) and afterwards measured again and marked most recently used;
- ``delete(name)`` is the store's ``evict_derived``: the set's directories are
  renamed away and removed.  A later compile for that kernel makes them again
  (the toolchain rebuilds a missing vmlinux.h, and a PCH clang cannot find is
  dropped and built again).

BTF uploads are never evicted here: they are the source of truth, bounded by
``LCC_MAX_BTF_RELEASES``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from lcc_server.ledger import DERIVED

__all__ = ["DerivedFiles"]

log = logging.getLogger("lcc_server.derived")


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


class DerivedFiles:
    """The derived file sets under ``work_dir``, accounted in ``artifacts``
    (an ``ArtifactStore``: ``put_derived``, ``pinned``, ``evict_derived``)."""

    def __init__(self, work_dir: Path, artifacts) -> None:
        self.work_dir = Path(work_dir)
        self.artifacts = artifacts
        self.evicted = 0  # sets this process deleted to stay within the budget
        artifacts.evict_derived = self.delete

    def dirs(self, sha: str) -> list[Path]:
        """The directories of the set derived from the BTF whose sha256 is ``sha``."""
        found = [p for p in (self.work_dir / "vmlinux").glob(f"{sha}*") if p.is_dir()]
        marks = tuple(f"/{p.name}/" for p in found)
        pch_root = self.work_dir / "pch"
        for key in pch_root.glob("*"):
            try:
                inputs = (key / "inputs.txt").read_text()
            except OSError:
                continue
            if marks and any(m in inputs for m in marks):
                found.append(key)
        return found

    def size(self, sha: str) -> int:
        return sum(_du(d) for d in self.dirs(sha))

    def account(self, sha: str) -> None:
        """Measure the set of ``sha`` and count it, most recently used."""
        self.artifacts.put_derived(DERIVED + sha, self.size(sha))

    def adopt(self) -> None:
        """Count the sets already on disk (made before this service started)."""
        for path in (self.work_dir / "vmlinux").glob("*"):
            sha = path.name.split(".", 1)[0]
            if path.is_dir() and not sha.startswith(".") and len(sha) == 64:
                self.account(sha)

    @contextlib.contextmanager
    def in_use(self, sha: str) -> Iterator[None]:
        """Pin the set of ``sha`` while inside; count it again afterwards."""
        with self.artifacts.pinned(DERIVED + sha):
            try:
                yield
            finally:
                # Outside the pin would let another process evict it between
                # the measure and the count; inside, the count may evict others.
                self.account(sha)

    def delete(self, name: str) -> None:
        """Remove the set the ledger entry ``name`` stands for."""
        sha = name[len(DERIVED):]
        if not sha or "/" in sha or sha.startswith("."):
            return
        for path in self.dirs(sha):
            trash = Path(tempfile.mkdtemp(prefix=".old-", dir=path.parent))
            try:
                os.rename(path, trash / path.name)
            except OSError as exc:
                log.warning("could not evict %s: %s", path.name, exc)
            shutil.rmtree(trash, ignore_errors=True)
        self.evicted += 1
        log.info("evicted the derived files of kernel BTF %s", sha[:16])
