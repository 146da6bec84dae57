"""The seam between :func:`lcc.compile.build` and whatever compiles: :class:`Backend`.

A backend turns a bundle into an :class:`Artifact` for one kernel.  lcc
ships three, chosen by name only at the edge (:func:`lcc.compile.choose_backend`):

=========  ==========================================  ================================
name       class                                       compiles with
=========  ==========================================  ================================
local      :class:`lcc.compile.local.LocalBackend`     clang here (the embedded toolchain)
server     :class:`lcc.compile.service.ServiceBackend` a compile service over HTTP
docker     :class:`lcc.compile.docker.DockerBackend`   the service image on local Docker
=========  ==========================================  ================================

:class:`lcc.compile.cache.CachedBackend` wraps any of them (or a backend of
your own) with the artifact cache.  Any object with these members is a
backend; none needs to inherit from :class:`Backend`.

A backend that compiles elsewhere (the service and docker backends) also
has ``trust``, a :class:`lcc.compile.trust.TrustPolicy`: every object it
returns was checked against a manifest signed by one of its keys, and the
cache checks each of its entries again with it when read.  A backend without
``trust`` (the local one, a backend of your own) is believed as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .artifact import Artifact
    from .bundle import Bundle

__all__ = ["BACKENDS", "Backend"]

#: The names :func:`lcc.compile.choose_backend` knows (``--backend``, ``LCC_BACKEND``).
BACKENDS = ("local", "server", "docker")


@runtime_checkable
class Backend(Protocol):
    """Something that compiles bundles.

    ``name``: a short kind (``local``, ``server``, ``docker``), for messages.
    ``origin``: where objects are made, recorded in ``Artifact.origin``.
    """

    @property
    def name(self) -> str: ...

    @property
    def origin(self) -> str: ...

    def key_part(self) -> dict:
        """What identifies this compiler in a cache key: JSON-able, equal for
        compilers that make equal objects from equal input (e.g. the local
        toolchain's versions, a service URL, an image name)."""
        ...

    def compile(self, bundle: Bundle, *, kernel: str, arch: str,
                defines: dict[str, str | None], btf: bool) -> Artifact:
        """``bundle`` compiled for kernel release ``kernel`` on ``arch``, with the
        (already checked) ``defines``; with ``btf``, ``Artifact.btf`` holds BTF
        tailored to the object.  Raises :class:`lcc.errors.LccError` subclasses."""
        ...
