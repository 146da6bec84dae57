"""The compile pipeline: a source bundle becomes a BPF object.

::

    from lcc.compile import build
    from lcc.compile.bundle import Bundle

    art = build(Bundle.from_path("tool.bpf.c"), defines={"N": 8})

Modules, each one concept:

- ``pipeline``: :func:`build` and :func:`choose_backend` (names and settings -> backend);
- ``backends``: the :class:`Backend` protocol; ``local``, ``service`` and
  ``docker`` implement it; ``cache`` wraps any backend with the artifact cache;
- ``trust``: the signing keys trusted here and the checks that make a compile
  service's object loadable (:class:`lcc.compile.trust.TrustPolicy`);
- ``artifact`` (:class:`Artifact`), ``bundle``, ``kernel`` (who this kernel is),
  ``defines`` (the ``-D`` parser), ``config`` (:class:`ClientConfig`, the
  ``LCC_*`` variables).

The names below are imported on first use, so ``import lcc.compile`` stays cheap.
"""

from __future__ import annotations

from .. import _lazy

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from .artifact import Artifact
    from .backends import BACKENDS, Backend
    from .cache import ArtifactCache, CachedBackend, artifact_key
    from .config import ClientConfig
    from .docker import DockerServiceBackend
    from .local import LocalBackend
    from .pipeline import build, choose_backend
    from .service import ServiceBackend

_EXPORTS = {
    "Artifact": "artifact",
    "BACKENDS": "backends",
    "Backend": "backends",
    "ArtifactCache": "cache",
    "CachedBackend": "cache",
    "artifact_key": "cache",
    "ClientConfig": "config",
    "DockerServiceBackend": "docker",
    "LocalBackend": "local",
    "build": "pipeline",
    "choose_backend": "pipeline",
    "ServiceBackend": "service",
}

__all__ = ["BACKENDS", "Artifact", "ArtifactCache", "Backend", "CachedBackend", "ClientConfig",
           "DockerServiceBackend", "LocalBackend", "ServiceBackend", "artifact_key", "build",
           "choose_backend"]


__getattr__ = _lazy.exports(globals(), _EXPORTS)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
