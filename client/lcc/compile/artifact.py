"""The result of a compile: :class:`Artifact`, what every backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Diagnostic

__all__ = ["Artifact"]


@dataclass
class Artifact:
    """A compiled object and what came with it.

    ``cached``: no compiler ran for this build (this client's cache answered,
    or the service answered from its own).  ``cache_hit``: this client's
    cache answered and nobody was contacted.  ``origin``: where the object
    was compiled (``local``, the service URL, ``docker:<image>``).
    ``btf_path``: a file holding ``btf`` (the tailored BTF), for libbpf's
    ``btf_custom_path``.  ``key``: the cache key it is stored under, if any.
    ``manifest``, ``signature``, ``key_id``: for an object from a compile
    service, the signed manifest it was checked against (its text), the
    signature (base64) and the signing key's fingerprint
    (:mod:`lcc.compile.trust`); None for a local compile.
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
    manifest: str | None = None
    signature: str | None = None
    key_id: str | None = None
