"""Where a bundle becomes a BPF object: :func:`build`, the one compile entry of the client.

:func:`build` is the only function in the client that leads to clang.  It
takes a backend (a :class:`lcc.compile.Backend` object, or a name chosen at
this edge by :func:`choose_backend`), puts the artifact cache in front of
it (:class:`lcc.compile.cache.CachedBackend`) and returns an
:class:`Artifact`.

:func:`choose_backend` picks one from names and settings, first match wins:

1. ``backend=`` argument (the CLI's ``--backend``): ``local``, ``server`` or ``docker``;
2. ``server=`` argument: that compile service (:mod:`lcc.compile.service`);
3. ``config.backend`` (``LCC_BACKEND``, same values as 1.);
4. ``config.server`` (``LCC_SERVER``): that compile service;
5. the embedded toolchain (:mod:`lcc.compile.local`) when clang is on PATH;
6. else :class:`ToolchainMissing`, saying how to get one.

``docker`` runs the service image on the local Docker engine
(:mod:`lcc.compile.docker`) and talks HTTP to it.  Settings come from a
:class:`ClientConfig`, by default :meth:`ClientConfig.from_env` (see
:mod:`lcc.compile.config` for the variables).  The cache key is described in
:mod:`lcc.compile.cache`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..errors import CompileError, LccError, ToolchainMissing
from . import defines as _defines
from . import kernel as _kernel
from .artifact import Artifact
from .backends import BACKENDS, Backend
from .bundle import Bundle
from .cache import ArtifactCache, CachedBackend, artifact_key, default_dir, spill_btf
from .config import ClientConfig
from .docker import DockerServiceBackend
from .local import LocalBackend, find_tool, work_dir

__all__ = ["BACKENDS", "Artifact", "artifact_key", "build", "choose_backend"]


def _local(config: ClientConfig, server: str | None, token: str | None,
           cache_root: Path | None) -> Backend:
    return LocalBackend.from_config(config, work_dir(cache_root or default_dir(config)))


def _server(config: ClientConfig, server: str | None, token: str | None,
            cache_root: Path | None) -> Backend:
    # Lazy: requests is slow to import, and the other backends never need it.
    from .service import ServiceBackend
    return ServiceBackend.from_config(config, server, token=token)


def _docker(config: ClientConfig, server: str | None, token: str | None,
            cache_root: Path | None) -> Backend:
    return DockerServiceBackend.from_config(config)


#: Backend name (:data:`BACKENDS`) -> factory(config, server, token, cache_root).
_BY_NAME = {"local": _local, "server": _server, "docker": _docker}


def choose_backend(*, server: str | None = None, backend: str | None = None,
                   token: str | None = None, cache_root: Path | None = None,
                   config: ClientConfig | None = None) -> Backend:
    """The backend :func:`build` would use (order in the module docstring).

    ``token`` (default ``config.token``) goes to a compile service;
    ``cache_root`` holds the local toolchain's work directory (default: the
    cache directory of ``config``).  ``config`` defaults to
    :meth:`ClientConfig.from_env`.  Raises :class:`LccError` for an unknown
    backend name or ``server`` without a URL, :class:`ToolchainMissing` when
    nothing can compile.
    """
    cfg = config if config is not None else ClientConfig.from_env()

    def by_name(name: str, what: str) -> Backend:
        make = _BY_NAME.get(name)
        if make is None:
            raise LccError(f"unknown compile backend {name!r} ({what})",
                           hint=f"use one of: {', '.join(BACKENDS)}")
        return make(cfg, server, token, cache_root)

    if backend:
        return by_name(backend, "backend argument")
    if server:
        return _server(cfg, server, token, cache_root)
    if cfg.backend:
        return by_name(cfg.backend, "LCC_BACKEND")
    if cfg.server:
        return _server(cfg, None, token, cache_root)
    if find_tool(cfg.clang):
        return _local(cfg, server, token, cache_root)
    raise ToolchainMissing("no clang here and no compile service named")


def build(bundle: Bundle, *, defines: Mapping[str, str | int | None] | None = None,
          server: str | None = None, kernel: str | None = None, arch: str | None = None,
          btf: bool = False, cache: bool | ArtifactCache = True,
          backend: str | Backend | None = None, token: str | None = None,
          config: ClientConfig | None = None) -> Artifact:
    """Compile ``bundle`` for ``kernel``/``arch`` (default: this machine) and return it.

    ``defines``: NAME -> value (None for a bare ``-DNAME``).  ``btf=True``
    also returns BTF tailored to the object for that kernel, stored in a file
    (``Artifact.btf_path``).  ``cache``: use the artifact cache (or this
    :class:`ArtifactCache`); a hit contacts nobody and calls no backend.
    ``backend``: a :class:`Backend` object, used as given (the caller owns
    it), or a name; a name, ``server`` and ``token`` are resolved by
    :func:`choose_backend` with ``config`` (default
    :meth:`ClientConfig.from_env`).

    An object from a compile service is returned (and cached) only once its
    signed manifest verified with a trusted key (:mod:`lcc.compile.trust`);
    a cache entry of one is checked again each time it is read.

    Raises :class:`CompileError` (with diagnostics), :class:`ToolchainMissing`,
    :class:`CompileServiceError` (:class:`UntrustedArtifact` for an object
    lcc will not load), :class:`BtfError`, :class:`LccError` (bad defines,
    backend or URL); :class:`TypeError` for a ``backend`` that is neither a
    name nor a backend.
    """
    defs = _defines.normalize(defines)
    me = _kernel.this_kernel()
    release = kernel or me.release
    arch = arch or me.arch
    cfg = config if config is not None else ClientConfig.from_env()
    store: ArtifactCache | None
    if isinstance(cache, ArtifactCache):
        store = cache
    else:
        store = ArtifactCache(default_dir(cfg)) if cache else None
    if backend is None or isinstance(backend, str):
        target = choose_backend(server=server, backend=backend, token=token,
                                cache_root=store.root if store is not None else None, config=cfg)
    elif isinstance(backend, Backend):
        target = backend
    else:
        raise TypeError(f"backend must be a name or a lcc.compile.Backend, not "
                        f"{type(backend).__name__}")
    try:
        if store is not None:
            return CachedBackend(target, store).compile(bundle, kernel=release, arch=arch,
                                                        defines=defs, btf=btf)
        art = target.compile(bundle, kernel=release, arch=arch, defines=defs, btf=btf)
    except CompileError as e:
        # The source stays on this side: str(e) draws each diagnostic's line from it.
        e.sources = {**bundle.files, **e.sources}
        raise
    if art.btf is not None:
        art.btf_path = str(spill_btf(art.btf))
    return art
