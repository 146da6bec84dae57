"""The client's compile settings, read from the environment in one place.

:class:`ClientConfig` holds every ``LCC_*`` variable the compile side
uses; :meth:`ClientConfig.from_env` is the only reader of them.  Backends,
the cache and :func:`lcc.compile.build` take a config object (or values
from one), never ``os.environ``, so tests and programs pass their own.

===============================  ====================  ==============================================
variable                         field                 meaning
===============================  ====================  ==============================================
``LCC_SERVER``                   ``server``            compile service URL, or several: ``a,b``
``LCC_TOKEN``                    ``token``             its bearer token
``LCC_BACKEND``                  ``backend``           ``local``, ``server`` or ``docker``
``LCC_CACHE_DIR``                ``cache_dir``         artifact cache root
``LCC_PUSH_BTF``                 ``push_btf``          ``0``: never upload this kernel's BTF
``LCC_DOCKER_IMAGE``             ``docker_image``      compile service image
``LCC_DOCKER_CONTAINER``         ``docker_container``  its container (volume ``<name>-state``)
``LCC_DOCKER_PORT``              ``docker_port``       port published on 127.0.0.1
``LCC_CLANG``                    ``clang``             the embedded toolchain's clang
``LCC_BPFTOOL``                  ``bpftool``           ... and bpftool
``LCC_SANDBOX``                  ``sandbox``           ``0``: no Landlock confinement of clang
``LCC_TRUSTED_KEYS``             ``trusted_keys``      a file of service signing keys to trust too
``LCC_INSECURE_TRUST_LOOPBACK``  ``trust_loopback``    ``1``: a loopback service needs no trusted key
``LCC_TIMEOUT``                  ``timeout``           seconds to wait for a service's answer
``LCC_MAX_REPLY_MB``             ``max_reply_bytes``   largest answer read from a service
===============================  ====================  ==============================================

``LCC_SERVER`` may list several URLs separated by commas (the replicas of a
fleet): :attr:`ClientConfig.servers` splits it, and the service backend
fails over from one to the next (:mod:`lcc.compile.service`).

An empty variable counts as unset.  Flags are off for ``0``, ``false``,
``no`` or ``off`` (any case); ``LCC_INSECURE_TRUST_LOOPBACK`` is off unless
set to something else.  ``trust_file`` (the keys ``lcc trust`` pins) has no
variable: None means ``trusted_keys`` in the user's config directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import LccError

__all__ = ["DEFAULT_DOCKER_CONTAINER", "DEFAULT_DOCKER_IMAGE", "ClientConfig"]

DEFAULT_DOCKER_IMAGE = "lcc-compiler:latest"
DEFAULT_DOCKER_CONTAINER = "lcc-compiler"
_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class ClientConfig:
    """Where and how the client compiles (fields: see the module's table).

    ``server``, ``token``, ``backend``, ``cache_dir``, ``docker_port``,
    ``trusted_keys``, ``timeout`` and ``max_reply_bytes`` are None when not
    set; ``cache_dir`` None means the user's cache directory, ``timeout`` and
    ``max_reply_bytes`` None the service client's defaults.
    """

    server: str | None = None
    token: str | None = None
    backend: str | None = None
    cache_dir: Path | None = None
    push_btf: bool = True
    docker_image: str = DEFAULT_DOCKER_IMAGE
    docker_container: str = DEFAULT_DOCKER_CONTAINER
    docker_port: int | None = None
    clang: str = "clang"
    bpftool: str = "bpftool"
    sandbox: bool = True
    trusted_keys: Path | None = None
    trust_loopback: bool = False
    timeout: float | None = None
    max_reply_bytes: int | None = None
    trust_file: Path | None = None

    @property
    def servers(self) -> tuple[str, ...]:
        """The compile service URLs ``server`` lists (comma-separated), as written,
        without empty entries; ``()`` when none."""
        return tuple(u.strip() for u in (self.server or "").split(",") if u.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ClientConfig:
        """The config the ``LCC_*`` variables of ``environ`` (default ``os.environ``) give.

        Raises :class:`LccError` when ``LCC_DOCKER_PORT`` is not a port number,
        ``LCC_TIMEOUT`` or ``LCC_MAX_REPLY_MB`` not a positive number.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(name) or None

        def flag(name: str) -> bool:
            return (get(name) or "1").lower() not in _OFF

        def opt_in(name: str) -> bool:
            return (get(name) or "0").lower() not in _OFF

        cache_dir = get("LCC_CACHE_DIR")
        trusted = get("LCC_TRUSTED_KEYS")
        reply_mb = _positive("LCC_MAX_REPLY_MB", get("LCC_MAX_REPLY_MB"))
        return cls(server=get("LCC_SERVER"), token=get("LCC_TOKEN"),
                   backend=get("LCC_BACKEND"),
                   cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
                   push_btf=flag("LCC_PUSH_BTF"),
                   docker_image=get("LCC_DOCKER_IMAGE") or DEFAULT_DOCKER_IMAGE,
                   docker_container=get("LCC_DOCKER_CONTAINER") or DEFAULT_DOCKER_CONTAINER,
                   docker_port=_port(get("LCC_DOCKER_PORT")),
                   clang=get("LCC_CLANG") or "clang", bpftool=get("LCC_BPFTOOL") or "bpftool",
                   sandbox=flag("LCC_SANDBOX"),
                   trusted_keys=Path(trusted).expanduser() if trusted else None,
                   trust_loopback=opt_in("LCC_INSECURE_TRUST_LOOPBACK"),
                   timeout=_positive("LCC_TIMEOUT", get("LCC_TIMEOUT")),
                   max_reply_bytes=int(reply_mb * (1 << 20)) if reply_mb else None)


def _port(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise LccError(f"LCC_DOCKER_PORT={value!r} is not a port number",
                       hint="unset it to let the Docker engine pick a port")
    return port


def _positive(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise LccError(f"{name}={value!r} is not a positive number",
                       hint="e.g. 30, or unset it for the default")
    return number
