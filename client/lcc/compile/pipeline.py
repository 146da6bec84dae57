"""Where a bundle becomes a BPF object: the one compile entry of the client.

:func:`build` is the only function in the client that leads to clang.  It
picks a backend, consults the artifact cache (:mod:`lcc.compile.cache`) and returns
an :class:`Artifact`.

Backends, first match wins:

1. ``backend=`` argument (the CLI's ``--backend``): ``local``, ``server`` or ``docker``;
2. ``server=`` argument: that compile service (:mod:`lcc.compile.service`);
3. ``LCC_BACKEND`` (same values as 1.);
4. ``LCC_SERVER``: that compile service;
5. the embedded toolchain (``lcc_server.toolchain``) when clang is on PATH;
6. else :class:`ToolchainMissing`, saying how to get one.

``docker`` runs the service image on the local Docker engine
(:mod:`lcc.compile.docker`) and talks HTTP to it.

Cache key: sha256 over the bundle digest, the defines, arch, kernel
release, the kernel's BTF identity (when compiling for the running kernel,
see :mod:`lcc.compile.kernel`) and where the object is made: the local toolchain's
identity (clang/bpftool versions, header hashes), or the service's URL (its
toolchain is unknown before asking; what it sends is checked against the
digest it sends, and a cache hit contacts nobody), or the Docker image name.

When the service lacks BTF for the running kernel (404), the client uploads
its ``/sys/kernel/btf/vmlinux`` once and asks again (``LCC_PUSH_BTF=0`` turns
that off; ``lcc btf push`` does it by hand).

Environment: ``LCC_SERVER``, ``LCC_TOKEN`` (bearer token), ``LCC_BACKEND``,
``LCC_CACHE_DIR`` (:mod:`lcc.compile.cache`), ``LCC_PUSH_BTF``, ``LCC_DOCKER_IMAGE``;
for the embedded toolchain ``LCC_CLANG``, ``LCC_BPFTOOL`` and ``LCC_SANDBOX=0``
(no Landlock confinement of clang).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from . import kernel as _kernel
from .bundle import Bundle
from .cache import ArtifactCache, CacheEntry, cache_key
from ..errors import (BtfError, CacheError, CompileServiceError, Diagnostic, LccError,
                     ToolchainMissing)

__all__ = ["BACKENDS", "Artifact", "artifact_key", "build", "choose_backend"]

log = logging.getLogger("lcc.compile")

BACKENDS = ("local", "server", "docker")
_DEFINE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class Artifact:
    """A compiled object and what came with it.

    ``cached``: no compiler ran for this build (this client's cache answered,
    or the service answered from its own).  ``cache_hit``: this client's
    cache answered and nobody was contacted.  ``origin``: where the object
    was compiled (``local``, the service URL, ``docker:<image>``).
    ``btf_path``: a file holding ``btf`` (the tailored BTF), for libbpf's
    ``btf_custom_path``.
    """

    object: bytes
    digest: str
    btf: bytes | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    toolchain: dict = field(default_factory=dict)
    cached: bool = False
    btf_path: str | None = None
    origin: str = ""
    cache_hit: bool = False
    key: str | None = None


# -- backends -------------------------------------------------------------------------


class _Local:
    """The embedded toolchain: clang here, against this machine's kernel BTF."""

    name = "local"

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.origin = "local"

    def key_part(self) -> dict:
        return {"local": _local_identity(str(self.work_dir))}

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
        tc = _toolchain(str(self.work_dir))
        try:
            res = tc.compile(bundle, arch=arch, defines=defines)
            tailored = tc.min_core_btf(res.object) if btf else None
        except ValueError as e:  # lcc_server.validation.InvalidRequest
            raise LccError(str(e)) from None
        except OSError as e:
            raise LccError(f"the local toolchain failed in {self.work_dir}: {e}") from None
        return Artifact(object=res.object, digest=res.digest, btf=tailored,
                        warnings=list(res.warnings), toolchain=dict(res.toolchain),
                        origin=self.origin)


class _Remote:
    """A compile service over HTTP."""

    name = "server"

    def __init__(self, url: str, token: str | None = None) -> None:
        from .service import normalize_url
        self.url = normalize_url(url)
        self.token = token
        self.origin = self.url

    def key_part(self) -> dict:
        return {"server": self.url}

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        from .service import ServiceClient
        with ServiceClient(self.url, token=self.token) as client:
            return _remote_compile(client, bundle, kernel=kernel, arch=arch, defines=defines,
                                   btf=btf)


class _Docker:
    """The compile service image on the local Docker engine (lcc.compile.docker)."""

    name = "docker"

    def __init__(self) -> None:
        self.image = os.environ.get("LCC_DOCKER_IMAGE") or "lcc-compiler:latest"
        self.origin = f"docker:{self.image}"

    def key_part(self) -> dict:
        return {"docker": self.image}

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        from .docker import DockerBackend
        from .service import ServiceClient
        with DockerBackend(self.image) as backend:
            url = backend.endpoint()
            with ServiceClient(url, token=backend.token or "") as client:
                art = _remote_compile(client, bundle, kernel=kernel, arch=arch,
                                      defines=defines, btf=btf)
        art.origin = self.origin
        return art


def _remote_compile(client, bundle: Bundle, *, kernel: str, arch: str,
                    defines: dict[str, str | None], btf: bool) -> Artifact:
    """Compile through ``client``; when the service lacks the running kernel's BTF,
    upload it once (unless ``LCC_PUSH_BTF=0``) and ask again."""
    try:
        return client.compile(bundle, kernel=kernel, arch=arch, defines=defines, btf=btf)
    except CompileServiceError as e:
        me = _kernel.this_kernel()
        if not (e.status == 404 and (kernel, arch) == (me.release, me.arch) and me.has_btf
                and os.environ.get("LCC_PUSH_BTF", "1") != "0"):
            raise
        log.info("compile service %s lacks BTF for %s (%s); uploading this kernel's",
                 client.url, kernel, arch)
        client.btf_put(arch, kernel, _kernel.read_btf())
    return client.compile(bundle, kernel=kernel, arch=arch, defines=defines, btf=btf)


def choose_backend(*, server: str | None = None, backend: str | None = None,
                   token: str | None = None, cache_root: Path | None = None):
    """The backend :func:`build` would use (see the module docstring).

    Raises :class:`LccError` for an unknown backend name or ``server``
    without a URL, :class:`ToolchainMissing` when nothing can compile.
    """
    def by_name(name: str, what: str):
        if name == "local":
            return _Local(_work_dir(cache_root))
        if name == "server":
            url = server or os.environ.get("LCC_SERVER")
            if not url:
                raise LccError("the server backend needs a compile service URL",
                               hint="pass --server URL or set LCC_SERVER")
            return _Remote(url, token)
        if name == "docker":
            return _Docker()
        raise LccError(f"unknown compile backend {name!r} ({what})",
                       hint=f"use one of: {', '.join(BACKENDS)}")

    if backend:
        return by_name(backend, "backend argument")
    if server:
        return _Remote(server, token)
    env_backend = os.environ.get("LCC_BACKEND")
    if env_backend:
        return by_name(env_backend, "LCC_BACKEND")
    if os.environ.get("LCC_SERVER"):
        return _Remote(os.environ["LCC_SERVER"], token)
    if _find_tool(os.environ.get("LCC_CLANG") or "clang"):
        return _Local(_work_dir(cache_root))
    raise ToolchainMissing("no clang here and no compile service named")


# -- the entry point -----------------------------------------------------------------


def build(bundle: Bundle, *, defines: Mapping[str, str | int | None] | None = None,
          server: str | None = None, kernel: str | None = None, arch: str | None = None,
          btf: bool = False, cache: bool | ArtifactCache = True, backend: str | None = None,
          token: str | None = None) -> Artifact:
    """Compile ``bundle`` for ``kernel``/``arch`` (default: this machine) and return it.

    ``defines``: NAME -> value (None for a bare ``-DNAME``).  ``btf=True``
    also returns BTF tailored to the object for that kernel, stored in a file
    (``Artifact.btf_path``).  ``cache``: use the artifact cache (or this
    :class:`ArtifactCache`); a hit contacts nobody.  ``server``/``backend``/
    ``token``: see the module docstring (``token`` defaults to ``LCC_TOKEN``).

    Raises :class:`CompileError` (with diagnostics), :class:`ToolchainMissing`,
    :class:`CompileServiceError`, :class:`BtfError`, :class:`LccError` (bad
    defines, backend or URL).
    """
    defs = _normalize_defines(defines)
    me = _kernel.this_kernel()
    release = kernel or me.release
    arch = arch or me.arch
    store: ArtifactCache | None
    if isinstance(cache, ArtifactCache):
        store = cache
    else:
        store = ArtifactCache() if cache else None
    target = choose_backend(server=server, backend=backend, token=token,
                            cache_root=store.root if store is not None else None)
    if store is None:
        art = target.compile(bundle, kernel=release, arch=arch, defines=defs, btf=btf)
        if art.btf is not None:
            art.btf_path = str(_spill_btf(art.btf))
        return art

    btf_id = me.btf_id if (release, arch) == (me.release, me.arch) else None
    key = artifact_key(bundle, defines=defs, arch=arch, kernel=release, kernel_btf=btf_id,
                       via=target.key_part())
    hit = _lookup(store, key, btf)
    if hit is not None:
        return hit
    with store.lock(key):
        hit = _lookup(store, key, btf)  # another process may have filled it meanwhile
        if hit is not None:
            return hit
        art = target.compile(bundle, kernel=release, arch=arch, defines=defs, btf=btf)
        art.key = key
        meta = {"origin": art.origin, "main": bundle.main, "kernel": release, "arch": arch,
                "defines": defs, "warnings": [w.to_dict() for w in art.warnings],
                "toolchain": art.toolchain}
        try:
            entry = store.put(key, art.object, btf=art.btf, meta=meta)
        except CacheError as e:
            log.warning("%s; continuing without the cache", e)
            if art.btf is not None:
                art.btf_path = str(_spill_btf(art.btf))
            return art
    if entry.btf_path is not None:
        art.btf_path = str(entry.btf_path)
    log.debug("compiled %s (%s) via %s: %s", bundle.main, key[:16], art.origin, art.digest)
    return art


def artifact_key(bundle: Bundle, *, defines: Mapping[str, str | None], arch: str, kernel: str,
                 kernel_btf: str | None, via: Mapping[str, Any]) -> str:
    """The cache key of an artifact: everything that decides the object (module docstring).

    ``kernel_btf`` is the kernel's BTF identity when known (the running
    kernel's), ``via`` names where it is compiled (``{"local": identity}``,
    ``{"server": url}``, ``{"docker": image}``).
    """
    return cache_key(bundle=bundle.digest(), defines=sorted(defines.items()), arch=arch,
                     kernel=kernel, kernel_btf=kernel_btf, via=dict(via))


def _lookup(store: ArtifactCache, key: str, need_btf: bool) -> Artifact | None:
    entry = store.get(key)
    if entry is None or (need_btf and entry.btf is None):
        return None
    log.debug("cache hit %s: %s", key[:16], entry.digest)
    return _from_entry(entry)


def _from_entry(entry: CacheEntry) -> Artifact:
    meta = entry.meta
    return Artifact(object=entry.object, digest=entry.digest, btf=entry.btf,
                    warnings=[Diagnostic.from_dict(d) for d in meta.get("warnings") or []],
                    toolchain=dict(meta.get("toolchain") or {}), cached=True,
                    btf_path=str(entry.btf_path) if entry.btf_path else None,
                    origin=str(meta.get("origin", "")), cache_hit=True, key=entry.key)


# -- helpers ----------------------------------------------------------------------------


def _normalize_defines(defines: Mapping[str, Any] | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, value in (defines or {}).items():
        if not isinstance(name, str) or not _DEFINE_NAME.match(name):
            raise LccError(f"define name {name!r} is not a C identifier")
        if value is not None:
            value = str(value)
            if any(c in value for c in "\n\r\0"):
                raise LccError(f"define {name} must be one line")
        out[name] = value
    return out


def _find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _work_dir(cache_root: Path | None) -> Path:
    """The embedded toolchain's work directory: in the cache, else (cache not
    writable) a private one in the temporary directory."""
    d = (cache_root or ArtifactCache().root) / "toolchain"
    try:
        d.mkdir(parents=True, exist_ok=True)
        return d
    except OSError as e:
        fallback = _private_tmp_dir("lcc-toolchain")
        log.warning("cannot use %s (%s); the local toolchain works in %s", d, e.strerror,
                    fallback)
        return fallback


def _private_tmp_dir(prefix: str) -> Path:
    """``$TMPDIR/<prefix>-<uid>``, mode 0700 and ours, else a fresh ``mkdtemp``."""
    d = Path(tempfile.gettempdir()) / f"{prefix}-{os.geteuid()}"
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = d.lstat()
        if st.st_uid == os.geteuid() and d.is_dir() and not d.is_symlink() \
                and st.st_mode & 0o077 == 0:
            return d
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-"))


def _sandbox_wanted() -> bool:
    return os.environ.get("LCC_SANDBOX", "1").lower() not in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=4)
def _toolchain(work_dir: str):
    """The embedded toolchain for ``work_dir`` (one per process)."""
    try:
        from lcc_server.toolchain import Toolchain
    except ImportError as e:  # pragma: no cover - packaging problem
        raise ToolchainMissing(f"the embedded toolchain is unavailable: {e}") from None
    return Toolchain(clang=os.environ.get("LCC_CLANG") or "clang",
                     bpftool=os.environ.get("LCC_BPFTOOL") or "bpftool",
                     work_dir=Path(work_dir), sandbox=_sandbox_wanted())


def _fingerprint() -> list:
    """Cheap stand-in for the toolchain identity: paths and stats of what it hashes."""
    from lcc_server.toolchain import include_dir
    paths = [_find_tool(os.environ.get("LCC_CLANG") or "clang"),
             _find_tool(os.environ.get("LCC_BPFTOOL") or "bpftool"),
             str(include_dir() / "lbc.h"),
             *sorted(str(p) for p in Path("/usr/include/bpf").glob("*.h"))]
    out = []
    for p in paths:
        if p is None:
            out.append(None)
            continue
        real = os.path.realpath(p)
        st = os.stat(real)
        out.append([real, st.st_size, st.st_mtime_ns, st.st_ino])
    return out


_identity_memo: dict[str, tuple[list, dict]] = {}


def _local_identity(work_dir: str) -> dict:
    """``Toolchain.identity()``, remembered on disk by :func:`_fingerprint` so that a
    cache hit runs no ``clang --version``."""
    fp = _fingerprint()
    if fp[0] is None:
        raise ToolchainMissing("clang was not found on PATH")
    memo = _identity_memo.get(work_dir)
    if memo and memo[0] == fp:
        return memo[1]
    path = Path(work_dir) / "identity.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(path.read_text())
        if saved["fingerprint"] == fp:
            _identity_memo[work_dir] = (fp, saved["identity"])
            return saved["identity"]
    identity = _toolchain(work_dir).identity()
    _identity_memo[work_dir] = (fp, identity)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".identity.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"fingerprint": fp, "identity": identity}, f)
        os.replace(tmp, path)
    return identity


def _spill_btf(data: bytes) -> Path:
    """Tailored BTF in a private temporary file named by its sha256 (no cache in use)."""
    d = _private_tmp_dir("lcc-btf")
    path = d / f"{hashlib.sha256(data).hexdigest()}.btf"
    if not path.exists() or path.read_bytes() != data:
        fd, tmp = tempfile.mkstemp(dir=d)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path
