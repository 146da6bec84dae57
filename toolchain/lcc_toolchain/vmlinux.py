"""vmlinux.h, generated once per distinct BTF and kept on disk.

``BtfDigests.sha256(path)`` hashes a BTF file, remembering the answer while
the file's identity (device, inode, size, mtime) stays the same, so the
5 MB ``/sys/kernel/btf/vmlinux`` is hashed once per process.
``VmlinuxCache.get(btf_path, sha)`` returns the directory holding
``vmlinux.h`` for that BTF, running ``bpftool btf dump file ... format c``
in the sandbox the first time (the BTF may be an upload from anyone), then
appending ``extern`` declarations of the kernel's kfuncs, which older bpftool
releases do not write (``lcc_toolchain.kfuncs``; read from the BTF in a thread
while bpftool runs).
Entries are published by an atomic rename after an fsync, so several threads
or processes may share one cache directory.  Beside each header,
``vmlinux.h.sha256`` records its size and digest; a header that no longer
matches (truncated, edited) or is gone is logged and made again, so a damaged
cache never fails every compile for that kernel.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from lcc_toolchain import kfuncs
from lcc_toolchain.errors import BtfUnavailable
from lcc_toolchain.locks import KeyedLocks
from lcc_toolchain.sandbox import Sandbox

__all__ = ["BtfDigests", "VmlinuxCache", "file_sha256"]

log = logging.getLogger("lcc_toolchain.vmlinux")

_STAMP = "vmlinux.h.sha256"  # "<size> <sha256>" of vmlinux.h beside it


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BtfDigests:
    """sha256 of BTF files, memoised by file identity."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[tuple, str]] = {}

    def sha256(self, path: Path) -> str:
        """Raises ``BtfUnavailable`` when the file cannot be read."""
        try:
            st = os.stat(path)
        except OSError as exc:
            raise BtfUnavailable(f"BTF file {path.name} cannot be read: {exc.strerror}") from None
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._memo.get(str(path))
        if hit and hit[0] == ident:
            return hit[1]
        digest = file_sha256(path)
        with self._lock:
            self._memo[str(path)] = (ident, digest)
        return digest


class VmlinuxCache:
    """``<root>/<btf sha256>.<LAYOUT>/vmlinux.h``, made with bpftool on first use.

    ``skip_kfuncs``: names never declared as kfuncs (libbpf's helpers, which
    its headers define).
    """

    #: Bumped when what a directory holds changes (2: kfunc declarations).
    LAYOUT = 2

    def __init__(self, root: Path, sandbox: Sandbox, bpftool: Callable[[], str], *,
                 skip_kfuncs: Callable[[], frozenset[str]] = frozenset) -> None:
        self.root = Path(root)
        self._sandbox = sandbox
        self._bpftool = bpftool  # resolves lazily: raises ToolMissing
        self._skip_kfuncs = skip_kfuncs
        self._locks = KeyedLocks()
        self._verified: dict[str, tuple] = {}  # directory -> header identity checked
        self._made: set[str] = set()  # BTF digests whose vmlinux.h get() made, not yet taken

    def take_made(self, sha: str) -> bool:
        """Whether ``get`` made the vmlinux.h of ``sha`` (rather than finding it)
        since the last call for it."""
        with self._locks.hold(sha):
            if sha in self._made:
                self._made.discard(sha)
                return True
            return False

    def path(self, sha: str) -> Path:
        return self.root / f"{sha}.{self.LAYOUT}"

    def _valid(self, final: Path) -> bool:
        """Whether ``final`` holds a header matching its recorded size and digest
        (hashed again only when the file's identity changed)."""
        header = final / "vmlinux.h"
        try:
            st = os.stat(header)
            recorded = (final / _STAMP).read_text().split()
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if self._verified.get(str(final)) == ident:
            return True
        if recorded != [str(st.st_size), file_sha256(header)]:
            log.warning("%s does not match its recorded size and digest; making it again",
                        header)
            return False
        self._verified[str(final)] = ident
        return True

    def get(self, btf_path: Path, sha: str) -> Path:
        """Directory holding vmlinux.h for the BTF whose sha256 is ``sha``.

        Raises ``BtfUnavailable`` when bpftool cannot read the BTF.
        """
        final = self.path(sha)
        if self._valid(final):
            return final
        with self._locks.hold(sha):
            if self._valid(final):
                return final
            self.root.mkdir(parents=True, exist_ok=True)
            if final.exists():  # damaged: out of the way, then made again
                trash = Path(tempfile.mkdtemp(prefix=".old-", dir=self.root))
                with contextlib.suppress(OSError):
                    os.rename(final, trash / "old")
                shutil.rmtree(trash, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
            # The kfunc declarations are read from the BTF while bpftool
            # writes the rest (both take a few hundred ms).
            kfunc_block = _Background(self._kfunc_block, btf_path)
            try:
                done = self._sandbox.run(
                    [self._bpftool(), "btf", "dump", "file", str(btf_path), "format", "c"],
                    cwd=tmp, read=[btf_path], write=[tmp], stdout_path=tmp / "vmlinux.h")
                if not done.ok:
                    why = _failure(done, btf_path)
                    raise BtfUnavailable(
                        f"bpftool could not turn the BTF into vmlinux.h: {why}",
                        hint="upload the kernel's /sys/kernel/btf/vmlinux unchanged")
                block = kfunc_block.result()
                if block:
                    header = tmp / "vmlinux.h"
                    header.write_text(kfuncs.append_to(header.read_text(errors="replace"),
                                                       block))
                _seal(tmp)
                try:
                    os.rename(tmp, final)
                except OSError:
                    if not self._valid(final):  # lost a race otherwise
                        raise
            finally:
                kfunc_block.result()  # never leave the thread behind
                shutil.rmtree(tmp, ignore_errors=True)
            # The directory of an older layout is not used again.
            shutil.rmtree(self.root / sha, ignore_errors=True)
            self._made.add(sha)
        return final

    def _kfunc_block(self, btf_path: Path) -> str:
        """The kfunc declarations to append to vmlinux.h; without them (a BTF
        this parser cannot read) vmlinux.h is still what bpftool wrote."""
        try:
            return kfuncs.declarations(Path(btf_path).read_bytes(), skip=self._skip_kfuncs())
        except (OSError, kfuncs.BtfError) as exc:
            log.warning("vmlinux.h without kfunc declarations: %s", exc)
            return ""


class _Background:
    """``fn(*args)`` run in a thread; ``result()`` waits for it and returns its
    value or raises its exception (every later call returns the same)."""

    def __init__(self, fn: Callable, *args) -> None:
        self._value: object = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True,
                                         name="lcc-vmlinux-kfuncs")
        self._thread.start()

    def _run(self, fn: Callable, args: tuple) -> None:
        try:
            self._value = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to result()
            self._error = exc

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


def _seal(directory: Path) -> None:
    """Record the header's size and digest, and flush both to disk."""
    header = directory / "vmlinux.h"
    stamp = directory / _STAMP
    stamp.write_text(f"{header.stat().st_size} {file_sha256(header)}\n")
    for path in (header, stamp, directory):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _failure(done, btf_path: Path) -> str:
    """One line saying why bpftool failed, without server paths."""
    if done.exceeded:
        return f"{done.exceeded} limit exceeded"
    lines = done.stderr.decode(errors="replace").replace(str(btf_path), btf_path.name).split("\n")
    lines = [ln.strip() for ln in lines if ln.strip()]
    return lines[-1] if lines else f"exit status {done.returncode}"
