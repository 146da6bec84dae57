"""Compile a BPF C bundle into a CO-RE object with clang, safely and fast.

``Toolchain`` is used by the compile service and, embedded, by the lcc client
on a machine that has clang; each maps the errors (``lcc_toolchain.errors``)
to its own.  It owns a work directory holding

- ``vmlinux/<btf sha256>/vmlinux.h``   (``lcc_toolchain.vmlinux``),
- ``vmlinux/<btf sha256>/cut-<sha>/vmlinux.h``  the part lbc.h itself needs
  (``lcc_toolchain.prune``),
- ``pch/<key>/lbc.pch``                 (``lcc_toolchain.pch``), for either header,
- ``tmp/``                              one directory per compile, removed after.

Each compile writes the bundle into a fresh directory and, when the bundle
allows it (``prune.usable`` and the rules of ``pch.reason_headers_differ``),
compiles against vmlinux.h cut down to the types the program can reach:

    clang -g -O2 -target bpfel -D__TARGET_ARCH_<x> -I <bundle> -I <lbc.h dir>
          -I <cut vmlinux.h dir> -idirafter /usr/include/<triplet>
          (-include-pch lbc.pch | -include lbc.h)
          -include <the program's further types> -D... -c <main> -o <out>

If that fails, or the bundle does not allow it, it compiles against the whole
vmlinux.h (``-I <vmlinux.h dir> [-include-pch lbc.pch]``), whose diagnostics
are the ones reported.  clang runs in the sandbox (``lcc_toolchain.sandbox``).
The include path is that of a libbpf program built by hand: ``<bpf/...>``
and UAPI headers (``<linux/bpf.h>``, ``<linux/types.h>`` -> ``asm/types.h``)
come from the system, with the multiarch directory of the target arch
(``lcc_toolchain.headers.multiarch_dir``).  ``<lbc.h dir>/bpf/`` completes
older libbpf headers: each of its headers includes the system one
(``#include_next``) and then defines what that libbpf lacks (``BPF_UPROBE``,
``bpf_ksym_exists``, ...), so they apply whichever order a program includes
them in.  vmlinux.h ends with ``extern`` declarations of the kernel's kfuncs
(``lcc_toolchain.kfuncs``).
Server directories are mapped to fixed names in the object's debug info
(``-ffile-prefix-map``) and scrubbed from diagnostics, so the object depends
only on the inputs and the toolchain identity, and no reply names a server
path.  Results with and without a precompiled header are byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lcc_toolchain import diagnostics, prune
from lcc_toolchain import identity as _identity
from lcc_toolchain.atomic import write_atomic
from lcc_toolchain.digest import bundle_digest
from lcc_toolchain.headers import (FLAGS_VERSION, MULTIARCH_TRIPLETS, header_files, include_dir,
                                   multiarch_dir)
from lcc_toolchain.errors import (BtfUnavailable, CompileFailed, Diagnostic, ToolchainError,
                                  ToolMissing)
from lcc_toolchain.pch import Pch, PchCache, reason_headers_differ, reason_not_applicable, refused
from lcc_toolchain.sandbox import Limits, Sandbox, SandboxError
from lcc_toolchain.validation import (ARCHES, BIG_ENDIAN_ARCHES, Caps, check_arch, check_bundle,
                                      check_defines, define_args)
from lcc_toolchain.vmlinux import BtfDigests, VmlinuxCache

__all__ = ["ARCHES", "CompileResult", "Toolchain", "bundle_digest", "include_dir"]

log = logging.getLogger("lcc_toolchain.toolchain")

HOST_BTF = Path("/sys/kernel/btf/vmlinux")
_USR_INCLUDE = Path("/usr/include")
_OBJ_NAME = "prog.o"
_TYPES_H = "vmlinux_types.h"  # a cut's further types, included after lbc.h


@dataclass
class CompileResult:
    """A compiled object and what came with it."""

    object: bytes
    digest: str  # sha256 hex of object
    warnings: list[Diagnostic] = field(default_factory=list)
    toolchain: dict = field(default_factory=dict)
    pch: bool = False  # whether a precompiled header was used
    cut: bool = False  # whether vmlinux.h was cut down to the program's types


class Toolchain:
    """clang + bpftool behind a sandbox, with vmlinux.h and PCH caches.

    Thread-safe: one instance serves concurrent compiles; no global lock.
    ``sandbox`` is True (confine tools, see ``lcc_toolchain.sandbox``), False
    (limits only) or a ready ``Sandbox``.  ``pch=False`` never uses
    precompiled headers; ``cut=False`` always compiles against the whole
    vmlinux.h.  ``one_off=True`` (``lcc compile``, a tool's first start: a
    process that compiles once and exits): a compile that had to make
    vmlinux.h cuts it with an index read only as far as the cut needs and
    not saved, and builds no precompiled header (neither pays back within one
    compile); the next compile, or the next process, saves and builds them.
    The object is the same either way.
    """

    def __init__(self, *, clang: str = "clang", bpftool: str = "bpftool", work_dir: Path,
                 sandbox: bool | Sandbox = True, limits: Limits | None = None,
                 pch: bool = True, cut: bool = True, caps: Caps | None = None,
                 libbpf_include: Path = Path("/usr/include"), one_off: bool = False) -> None:
        self.work_dir = Path(work_dir)
        self._clang_name = clang
        self._bpftool_name = bpftool
        if isinstance(sandbox, Sandbox):
            self.sandbox = sandbox
        else:
            self.sandbox = Sandbox(enabled=sandbox, limits=limits or Limits())
            self.sandbox.extra_read = tuple(self.sandbox.toolchain_paths(clang, bpftool))
        self.use_pch = pch
        self.use_cut = cut
        self.one_off = one_off
        self._cutters = prune.CutterCache()
        self._fixed: tuple[tuple, prune.FixedHeaders] | None = None  # (stamp, headers)
        self.caps = caps or Caps()
        self.libbpf_include = Path(libbpf_include)
        self._btf = BtfDigests()
        self._vmlinux = VmlinuxCache(self.work_dir / "vmlinux", self.sandbox, self.bpftool_path,
                                     skip_kfuncs=self._helper_names)
        self._pch = PchCache(self.work_dir / "pch", self.sandbox)
        self._lock = threading.Lock()
        self._hash_memo: dict[str, tuple[tuple, str]] = {}
        self._identity: tuple[list, dict] | None = None  # (fingerprint, identity)
        self._remove_leftovers()
        self._open_work_dir()

    def _remove_leftovers(self) -> None:
        """Remove request directories (``tmp/c-*``, ``tmp/b-*``) that a killed
        process left behind.  Only those older than twice the wall-clock limit:
        other processes sharing the work directory may be compiling."""
        cutoff = time.time() - max(60.0, 2 * self.sandbox.limits.wall_seconds)
        try:
            entries = list(os.scandir(self.work_dir / "tmp"))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(("c-", "b-")) and entry.stat(
                    follow_symlinks=False).st_mtime < cutoff:
                shutil.rmtree(entry.path, ignore_errors=True)

    def _open_work_dir(self) -> None:
        """Let the sandbox's user (``Sandbox.user``) reach the work directory:
        its cache directories are made searchable (0711) and what a tool reads
        there readable.  If a directory above it keeps others out (e.g. /root),
        tools run as this process's user, with a warning."""
        if self.sandbox.user is None:
            return
        self.work_dir.mkdir(parents=True, exist_ok=True)
        for parent in self.work_dir.resolve().parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                log.warning("compilers run as uid %d, not uid %d: %s is not searchable by "
                            "others (put LCC_STATE_DIR elsewhere, e.g. /var/lib/lcc)",
                            os.geteuid(), self.sandbox.user[0], parent)
                self.sandbox.user = None
                return
        for d in (self.work_dir, self.work_dir / "tmp", self.work_dir / "vmlinux",
                  self.work_dir / "pch"):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o711)

    def _readable_by_tools(self, root: Path) -> None:
        """Make ``root``, inputs in a request directory, readable by the
        sandbox's user (the request directory itself only searchable)."""
        if self.sandbox.user is None:
            return
        os.chmod(root.parent, 0o711)
        for dirpath, dirnames, filenames in os.walk(root):
            os.chmod(dirpath, 0o755)
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o644)

    def close(self) -> None:
        """Stop the sandbox's spawner (a later compile starts another)."""
        self.sandbox.close()

    # -- tools and identity -------------------------------------------------

    def clang_path(self) -> str:
        """Absolute path of clang; raises ``ToolMissing``."""
        return self._which(self._clang_name, "clang")

    def bpftool_path(self) -> str:
        """Absolute path of bpftool; raises ``ToolMissing``."""
        return self._which(self._bpftool_name, "bpftool")

    @staticmethod
    def _which(name: str, what: str) -> str:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
        if not found:
            raise ToolMissing(f"{what} ({name}) was not found on PATH")
        return os.path.abspath(found)

    @staticmethod
    def _version(key: str, argv: list[str]) -> str | None:
        """First line(s) of a tool's version output (run only when the
        fingerprint of the toolchain changed: ``identity``)."""
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30,  # noqa: S603
                                 env={}, check=True).stdout
            lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
            if key == "bpftool":  # "/usr/sbin/bpftool v7.1.0" names a server path
                lines[0] = "bpftool " + lines[0].split(None, 1)[-1]
                return "; ".join(lines[:2])
            return lines[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return None

    def _hash_files(self, key: str, paths: list[Path]) -> str:
        """sha256[:16] over files' names and contents, memoised by their stat."""
        stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
        with self._lock:
            hit = self._hash_memo.get(key)
        if hit and hit[0] == stats:
            return hit[1]
        h = hashlib.sha256()
        for p in paths:
            h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
        digest = h.hexdigest()[:16]
        with self._lock:
            self._hash_memo[key] = (stats, digest)
        return digest

    def identity(self) -> dict:
        """What decides the output besides the inputs: tool versions and header hashes.

        ``{"clang", "bpftool", "lbc_h", "libbpf_h", "flags"}``; stable while
        nothing is upgraded.  Remembered in the work directory against the
        stats of what it is computed from (``lcc_toolchain.identity``), so a
        new process runs no ``clang --version`` while they stay the same.
        Raises ``ToolMissing`` without clang.
        """
        clang_path = self.clang_path()
        try:
            bpftool_path: str | None = self.bpftool_path()
        except ToolMissing:
            bpftool_path = None
        fp = _identity.fingerprint(clang_path, bpftool_path, self.libbpf_include)
        with self._lock:
            if self._identity is not None and self._identity[0] == fp:
                return dict(self._identity[1])
        value = _identity.saved(self.work_dir, fp)
        if value is None:
            value = self._compute_identity(clang_path, bpftool_path)
            _identity.remember(self.work_dir, fp, value)
        with self._lock:
            self._identity = (fp, value)
        return dict(value)

    def _compute_identity(self, clang_path: str, bpftool_path: str | None) -> dict:
        clang = self._version("clang", [clang_path, "--version"])
        if clang is None:
            raise ToolMissing(f"{clang_path} --version failed")
        bpftool = (self._version("bpftool", [bpftool_path, "version"])
                   if bpftool_path is not None else None)
        bpf_dir = self.libbpf_include / "bpf"
        return {
            "clang": clang,
            "bpftool": bpftool,
            "lbc_h": self._hash_files("lbc_h", header_files()),
            "libbpf_h": self._hash_files("libbpf_h", sorted(bpf_dir.glob("*.h"))),
            "flags": FLAGS_VERSION,
        }

    def _helper_names(self) -> frozenset[str]:
        """Names libbpf's bpf_helper_defs.h defines (never redeclared as kfuncs)."""
        try:
            text = (self.libbpf_include / "bpf" / "bpf_helper_defs.h").read_text(errors="replace")
        except OSError:
            return frozenset()
        return frozenset(re.findall(r"\(\*\s*(\w+)\)\s*\(", text))

    # -- BTF and headers ----------------------------------------------------

    def btf_sha256(self, btf_path: Path) -> str:
        """sha256 of a BTF file (memoised); raises ``BtfUnavailable`` if unreadable."""
        return self._btf.sha256(Path(btf_path))

    def vmlinux_h(self, btf_path: Path = HOST_BTF) -> Path:
        """vmlinux.h for this BTF, generated once per distinct BTF.

        Raises ``BtfUnavailable`` (unreadable BTF) or ``ToolMissing`` (no bpftool).
        """
        btf_path = Path(btf_path)
        return self._vmlinux.get(btf_path, self.btf_sha256(btf_path)) / "vmlinux.h"

    def _flags(self, arch: str, vmdir: Path, src: Path | None) -> list[str]:
        inc = include_dir()
        flags = ["-g", "-O2", "-target", "bpfeb" if arch in BIG_ENDIAN_ARCHES else "bpfel",
                 f"-D__TARGET_ARCH_{ARCHES[arch]}",
                 "-fno-crash-diagnostics", "-fno-color-diagnostics"]
        if src is not None:
            flags += ["-I", str(src), f"-ffile-prefix-map={src}=."]
        flags += ["-I", str(inc), "-I", str(vmdir)]
        # libbpf's and the kernel's UAPI headers, after clang's own system
        # directories (which hold /usr/include already), as a hand-written
        # libbpf Makefile has them.
        if self.libbpf_include != _USR_INCLUDE:
            flags += ["-isystem", str(self.libbpf_include)]
        if (multiarch := multiarch_dir(arch, _USR_INCLUDE)) is not None:
            flags += ["-idirafter", str(multiarch)]
        flags += [f"-ffile-prefix-map={inc}=/lcc/include",
                  f"-ffile-prefix-map={vmdir}=/lcc/vmlinux"]
        return flags

    def _system_read(self, arch: str) -> list[Path]:
        """System header directories clang reads (besides the toolchain's own)."""
        dirs = [self.libbpf_include, _USR_INCLUDE]
        if (multiarch := multiarch_dir(arch, _USR_INCLUDE)) is not None:
            dirs.append(multiarch)
        return list(dict.fromkeys(dirs))

    def _pch_for(self, arch: str, btf_sha: str, vmdir: Path,
                 identity: dict | None = None) -> tuple[str, Pch | None]:
        inc = include_dir()
        # A PCH records the absolute paths of the headers it was built from, so
        # two installations with the same lbc.h still need PCHs of their own.
        key = hashlib.sha256(json.dumps([identity or self.identity(), btf_sha, arch, str(inc),
                                         str(vmdir)], sort_keys=True).encode()).hexdigest()[:32]

        def argv(out: Path, deps: Path) -> list[str]:
            return [self.clang_path(), *self._flags(arch, vmdir, None), "-x", "c-header",
                    str(inc / "lbc.h"), "-o", str(out), "-MD", "-MF", str(deps)]
        read = [inc, vmdir, *self._system_read(arch)]
        return key, self._pch.get(key, argv, read)

    def prepare(self, btf_path: Path = HOST_BTF, arch: str = "x86_64") -> bool:
        """Build vmlinux.h, its cut for lbc.h and the PCHs ahead of the first
        compile, and start the sandbox's spawner; True if a PCH exists."""
        check_arch(arch)
        try:
            self.sandbox.start()
        except SandboxError as exc:
            log.warning("%s (retried on the first compile)", exc)
        btf_sha = self.btf_sha256(btf_path)
        vmdir = self.vmlinux_h(btf_path).parent
        if self.use_cut and (cutter := self._cutter(vmdir)) is not None and self.use_pch:
            self._pch_for(arch, btf_sha, self._base_dir(vmdir, cutter))
        return self.use_pch and self._pch_for(arch, btf_sha, vmdir)[1] is not None

    # -- the cut vmlinux.h ----------------------------------------------------

    def _fixed_headers(self, identity: dict | None = None) -> prune.FixedHeaders:
        """What lbc.h and the libbpf headers it includes use of vmlinux.h
        (re-read when either changes on disk)."""
        inc = include_dir()
        identity = identity or self.identity()  # hashes of those headers
        stamp = (identity["lbc_h"], identity["libbpf_h"])
        with self._lock:
            if self._fixed is not None and self._fixed[0] == stamp:
                return self._fixed[1]
        fixed = prune.FixedHeaders.scan(inc / "lbc.h", [inc, self.libbpf_include])
        with self._lock:
            self._fixed = (stamp, fixed)
        return fixed

    def _cutter(self, vmdir: Path, identity: dict | None = None, *,
                save: bool = True) -> prune.Cutter | None:
        try:
            return self._cutters.get(vmdir / "vmlinux.h", self._fixed_headers(identity),
                                     save=save)
        except (OSError, ValueError) as exc:
            log.warning("compiling against the whole vmlinux.h: %s", exc)
            return None

    @staticmethod
    def _base_dir(vmdir: Path, cutter: prune.Cutter) -> Path:
        """Directory of the vmlinux.h that lbc.h alone needs, written once;
        named by its content, so a changed lbc.h gets a directory of its own."""
        text = cutter.base_header().encode()
        base = vmdir / f"cut-{hashlib.sha256(text).hexdigest()[:16]}"
        if not (base / "vmlinux.h").is_file():
            write_atomic(base / "vmlinux.h", text, mode=0o644)
        return base

    def _cut_plan(self, vmdir: Path, main: str, files: Mapping[str, str],
                  defines: Mapping[str, str | None], identity: dict | None = None,
                  save_index: bool = True) -> tuple[Path, str] | None:
        """(directory of the base vmlinux.h, text of the program's further
        types), or None when this bundle compiles against the whole header."""
        if not self.use_cut or not prune.usable(files):
            return None
        names: set[str] = set()
        for text in [*files.values(), *(v for v in defines.values() if v)]:
            names |= prune.identifiers(text)
        for again in (False, True):
            cutter = self._cutter(vmdir, identity, save=save_index)
            if cutter is None:
                return None
            try:
                if reason_headers_differ(cutter.fixed.files, cutter.header_identifiers,
                                         main, files, defines):
                    return None
                return self._base_dir(vmdir, cutter), cutter.extra_header(names)
            except ValueError as exc:
                # Part of the saved index read only now is damaged: index
                # vmlinux.h again, so that the cut is the same as ever.
                log.warning("indexing vmlinux.h again: %s", exc)
                self._cutters.forget(vmdir / "vmlinux.h")
                if again:
                    return None
        return None

    # -- compiling ----------------------------------------------------------

    def compile(self, bundle, *, arch: str = "x86_64",
                defines: Mapping[str, str | None] | None = None,
                btf_path: Path = HOST_BTF, use_pch: bool | None = None,
                cancel: threading.Event | None = None) -> CompileResult:
        """Compile ``bundle`` (``.main`` and ``.files``: relative path -> text).

        ``defines`` maps NAME -> value (None for a bare ``-DNAME``).  Raises
        ``CompileFailed`` (clang's diagnostics, or a limit hit),
        ``InvalidRequest`` (a ``ValueError``: bad bundle, arch or define),
        ``BtfUnavailable``, ``ToolMissing``, ``ToolchainError`` (the sandbox
        could not be set up), ``sandbox.Cancelled`` (``cancel`` was set: clang
        is killed).  ``use_pch=False`` forces the plain path (the result is the same).
        """
        main, files = bundle.main, dict(bundle.files)
        check_bundle(main, files, self.caps)
        defines = check_defines(defines, self.caps)
        check_arch(arch)
        clang = self.clang_path()
        identity = self.identity()
        btf_path = Path(btf_path)
        btf_sha = self.btf_sha256(btf_path)
        vmdir = self._vmlinux.get(btf_path, btf_sha)
        # A one-off process that just made vmlinux.h leaves the index and the
        # PCH to the next one (see the class docstring).
        first = self.one_off and self._vmlinux.take_made(btf_sha)

        want_pch = self.use_pch and use_pch is not False and not first
        plan = self._cut_plan(vmdir, main, files, defines, identity, save_index=not first)

        tmp_root = self.work_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        req = Path(tempfile.mkdtemp(prefix="c-", dir=tmp_root))
        try:
            src, out = req / "src", req / "out"
            _write_bundle(src, files)
            self._readable_by_tools(src)
            out.mkdir()
            done, cut = None, False
            if plan is not None:
                base_dir, extra = plan
                (req / "types").mkdir()
                (req / "types" / _TYPES_H).write_text(extra)
                self._readable_by_tools(req / "types")
                done = self._attempt(clang, arch, btf_sha, base_dir, src, out, main, files,
                                     defines, want_pch, req / "types" / _TYPES_H, cancel,
                                     identity)
                cut = done[0] == 0 and not done[2]
                if not cut and not done[2]:
                    # Maybe a type the cut left incomplete, maybe an error in the
                    # program: the whole header decides, and its diagnostics are
                    # the ones reported.  (A limit hit is reported as it is.)
                    done = None
            if done is None:
                done = self._attempt(clang, arch, btf_sha, vmdir, src, out, main, files,
                                     defines, want_pch, None, cancel, identity)
            returncode, log, exceeded, pch = done
            diags = diagnostics.parse(log)
            if exceeded or returncode != 0:
                raise _compile_error(main, returncode, log, diags, exceeded, self.sandbox.limits,
                                     arch)
            obj = (out / _OBJ_NAME).read_bytes()
        finally:
            shutil.rmtree(req, ignore_errors=True)
        return CompileResult(object=obj, digest=hashlib.sha256(obj).hexdigest(),
                             warnings=[d for d in diags if d.severity == "warning"],
                             toolchain=identity, pch=pch, cut=cut)

    def _attempt(self, clang: str, arch: str, btf_sha: str, vmdir: Path, src: Path, out: Path,
                 main: str, files: Mapping[str, str], defines: Mapping[str, str | None],
                 want_pch: bool, extra: Path | None,
                 cancel: threading.Event | None = None,
                 identity: dict | None = None) -> tuple[int, str, str | None, bool]:
        """One clang run against the vmlinux.h in ``vmdir`` (plus ``extra``, the
        program's further types of a cut), with that header's PCH when it
        applies.  Returns (returncode, log, limit exceeded, PCH used)."""
        pch_key, pch = None, None
        if want_pch:
            pch_key, pch = self._pch_for(arch, btf_sha, vmdir, identity)
            # (a cut plan has already checked the same rules, against every header)
            if pch is not None and extra is None and reason_not_applicable(pch, main, files,
                                                                            defines):
                pch = None
        run = self._run_clang(clang, arch, vmdir, src, out, main, defines, pch, extra, cancel)
        if pch is not None and run[0] != 0 and refused(run[1]):
            # clang refused the PCH (a header changed on disk): rebuild later.
            self._pch.drop(pch_key, pch)
            pch = None
            run = self._run_clang(clang, arch, vmdir, src, out, main, defines, None, extra,
                                  cancel)
        return (*run, pch is not None)

    def _run_clang(self, clang: str, arch: str, vmdir: Path, src: Path, out: Path, main: str,
                   defines: Mapping[str, str | None], pch: Pch | None,
                   extra: Path | None,
                   cancel: threading.Event | None = None) -> tuple[int, str, str | None]:
        argv = [clang, *self._flags(arch, vmdir, src)]
        read = [src, include_dir(), vmdir, *self._system_read(arch)]
        if pch is not None:
            argv += ["-include-pch", str(pch.path)]
            read.append(pch.path.parent)
        elif extra is not None:  # the program's types must follow lbc.h's
            argv += ["-include", str(include_dir() / "lbc.h")]
        if extra is not None:
            argv += [f"-ffile-prefix-map={extra.parent}=/lcc/types", "-include", str(extra)]
            read.append(extra.parent)
        argv += [*define_args(defines), "-c", main, "-o", str(out / _OBJ_NAME)]
        try:
            done = self.sandbox.run(argv, cwd=src, read=read, write=[out], cancel=cancel)
        except SandboxError as exc:
            raise ToolchainError(f"the compiler sandbox could not be set up: {exc}",
                                 hint="run on a kernel with Landlock, or disable the sandbox "
                                      "(LCC_SANDBOX=0) on a trusted host") from None
        scrub = diagnostics.PathScrubber([
            (src, ""), (out, ""), (vmdir, ""), (include_dir(), ""),
            *([(extra.parent, "")] if extra is not None else []),
            (self.libbpf_include, ""), (self.work_dir, "<work>/"),
            *([(pch.path.parent, "")] if pch is not None else [])])
        text = diagnostics.hide_denied(scrub(done.stderr.decode("utf-8", errors="replace")))
        return done.returncode, text, done.exceeded

    # -- tailored BTF -------------------------------------------------------

    def min_core_btf(self, obj: bytes, btf_path: Path = HOST_BTF) -> bytes:
        """BTF of ``btf_path`` cut down to the types ``obj`` relocates against
        (``bpftool gen min_core_btf``).  Raises ``BtfUnavailable``, ``ToolMissing``."""
        bpftool = self.bpftool_path()
        btf_path = Path(btf_path)
        tmp_root = self.work_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        req = Path(tempfile.mkdtemp(prefix="b-", dir=tmp_root))
        try:
            src, out = req / "src", req / "out"
            src.mkdir()
            out.mkdir()
            (src / "obj.o").write_bytes(obj)
            self._readable_by_tools(src)
            done = self.sandbox.run(
                [bpftool, "gen", "min_core_btf", str(btf_path), str(out / "min.btf"),
                 str(src / "obj.o")], cwd=out, read=[btf_path, src], write=[out])
            if not done.ok or not (out / "min.btf").is_file():
                why = done.exceeded or done.stderr.decode(errors="replace").strip()[-300:]
                why = why.replace(str(req), "").replace(str(btf_path), btf_path.name)
                raise BtfUnavailable(f"bpftool could not tailor BTF for this object: {why}")
            return (out / "min.btf").read_bytes()
        finally:
            shutil.rmtree(req, ignore_errors=True)


def _write_bundle(src: Path, files: Mapping[str, str]) -> None:
    """Write validated bundle files under ``src`` (never following symlinks)."""
    src.mkdir()
    for rel, text in files.items():
        target = src / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with open(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def _compile_error(main: str, returncode: int, log: str, diags: list[Diagnostic],
                   exceeded: str | None, limits: Limits, arch: str) -> CompileFailed:
    log = diagnostics.truncate(log)
    if exceeded:
        detail = {"CPU time": f"{limits.cpu_seconds} s",
                  "wall-clock time": f"{limits.wall_seconds} s",
                  "memory": f"{limits.memory_bytes >> 20} MiB",
                  "output size": f"{limits.file_size_bytes >> 20} MiB"}.get(exceeded, "")
        msg = f"compilation stopped: {exceeded} limit ({detail}) exceeded"
        return CompileFailed(msg, [*diags, Diagnostic(main, 0, 0, "error", msg)], log,
                             hint="simplify the program; macro expansion may be exploding")
    if not any("error" in d.severity for d in diags):
        what = f"signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
        diags = [*diags, Diagnostic(main, 0, 0, "error", f"clang failed ({what})")]
    return CompileFailed("clang could not compile the program", diags, log,
                         hint=_hint(log, arch))


# A diagnostic located in a UAPI header (paths are scrubbed to be relative).
_UAPI_DIAG = re.compile(
    r"(?m)^(?:In file included from )?(?:linux|asm|asm-generic)/[\w./-]+\.h:\d+")


def _hint(log: str, arch: str) -> str | None:
    """What to do about a failure clang's own words do not explain."""
    if "'asm/" in log and "file not found" in log and multiarch_dir(arch, _USR_INCLUDE) is None:
        triplet = MULTIARCH_TRIPLETS.get(arch, arch)
        return (f"UAPI headers need the {arch} kernel headers' asm/ directory, which the "
                f"compile host lacks: install them for {arch} (Debian: linux-libc-dev for "
                f"that architecture, /usr/include/{triplet}/asm), or compile on a {arch} host")
    if "redefinition of" in log and "vmlinux.h" in log and _UAPI_DIAG.search(log):
        return ("vmlinux.h already defines the kernel's types: include either vmlinux.h or "
                "the UAPI headers (<linux/bpf.h>, <linux/types.h>, ...), not both")
    return None
