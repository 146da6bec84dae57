"""What a compile request may contain, checked without a compiler.

Shared by the HTTP models (``lcc_server.models``), by ``Toolchain`` itself
(so that a bundle given to the toolchain directly is held to the same rules)
and by the lcc client, whose define parser can use ``check_define``.  Every
check raises ``InvalidRequest`` (``lcc_toolchain.errors``, a ``ValueError``)
whose message names the offending field and never repeats more than a short
prefix of it.  Patterns are matched against the whole value
(``re.fullmatch``), so a trailing newline never slips past ``$``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lcc_toolchain.errors import InvalidRequest

__all__ = [
    "ARCHES",
    "BIG_ENDIAN_ARCHES",
    "InvalidRequest",
    "Caps",
    "DEFINE_NAME_RE",
    "check_arch",
    "check_bundle",
    "check_define",
    "check_defines",
    "check_digest",
    "check_release",
    "define_args",
]

#: Kernel machine names (``uname -m``) -> the ``__TARGET_ARCH_*`` suffix
#: libbpf's bpf_tracing.h expects.
ARCHES: dict[str, str] = {
    "x86_64": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "s390x": "s390",
    "ppc64le": "powerpc",
    "ppc64": "powerpc",
    "riscv64": "riscv",
    "armv7l": "arm",
    "loongarch64": "loongarch",
    "mips64": "mips",
}
#: Machines whose BPF byte order is big-endian (clang target ``bpfeb``).
BIG_ENDIAN_ARCHES = frozenset({"s390x", "ppc64", "mips64"})

RELEASE_RE = re.compile(r"^[A-Za-z0-9._+~-]{1,128}$")
#: A macro name the service accepts; use with ``fullmatch`` (or ``check_define``).
DEFINE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DIGEST_RE = re.compile(r"^[0-9a-f]{64}$")
_PATH_COMPONENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}$")
_MAX_DEPTH = 8
#: A whole bundle path (what ``check_path`` accepts), for documents such as OpenAPI.
PATH_RE = re.compile(rf"^(?:{_PATH_COMPONENT_RE.pattern[1:-1]}/){{0,{_MAX_DEPTH - 1}}}"
                     rf"{_PATH_COMPONENT_RE.pattern[1:-1]}$")


@dataclass(frozen=True)
class Caps:
    """Size caps of one compile request."""

    max_files: int = 64
    max_file_bytes: int = 1 << 20
    max_bundle_bytes: int = 4 << 20
    max_defines: int = 64
    max_define_value: int = 256


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def check_release(release: str) -> str:
    """A kernel release usable as a file name: no separators, not '.' or '..'."""
    if (not isinstance(release, str) or not RELEASE_RE.fullmatch(release)
            or release.startswith(".")):
        raise InvalidRequest(f"kernel release {_short(release)} must match "
                             f"{RELEASE_RE.pattern} and not start with '.'")
    return release


def check_arch(arch: str) -> str:
    if arch not in ARCHES:
        raise InvalidRequest(f"arch {_short(arch)} is not one of {', '.join(sorted(ARCHES))}")
    return arch


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest):
        raise InvalidRequest(f"digest {_short(digest)} must be 64 lower-case hex digits")
    return digest


def check_path(path: str) -> str:
    """A bundle path: relative, '/'-separated, no '.', '..' or hidden tricks."""
    if not isinstance(path, str) or not path:
        raise InvalidRequest("bundle paths must be non-empty strings")
    parts = path.split("/")
    if len(parts) > _MAX_DEPTH or not all(_PATH_COMPONENT_RE.fullmatch(p) for p in parts):
        raise InvalidRequest(f"bundle path {_short(path)} must be relative, at most "
                             f"{_MAX_DEPTH} levels, each part matching "
                             f"{_PATH_COMPONENT_RE.pattern} (no '/', '..' or '.' parts)")
    return path


def check_bundle(main: str, files: Mapping[str, str], caps: Caps | None = None) -> None:
    """The bundle's shape: ``main`` is a non-empty ``.c`` file among ``files``;
    paths are safe; texts are UTF-8 without NUL; counts and sizes within ``caps``."""
    caps = caps or Caps()
    if not isinstance(files, Mapping) or not files:
        raise InvalidRequest("bundle.files must name at least the main source")
    if len(files) > caps.max_files:
        raise InvalidRequest(f"bundle has {len(files)} files, at most {caps.max_files} allowed")
    check_path(main)
    if not main.endswith(".c"):
        raise InvalidRequest(f"bundle.main {_short(main)} must be a .c file")
    if main not in files:
        raise InvalidRequest(f"bundle.main {_short(main)} is not in bundle.files")
    if isinstance(files[main], str) and not files[main].strip():
        raise InvalidRequest(f"bundle.main {_short(main)} is empty")
    total = 0
    folded: set[str] = set()
    for path, text in files.items():
        check_path(path)
        if path.lower() in folded:
            raise InvalidRequest(f"bundle path {_short(path)} differs from another only by case")
        folded.add(path.lower())
        if not isinstance(text, str):
            raise InvalidRequest(f"bundle file {_short(path)} must be text")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidRequest(f"bundle file {_short(path)} is not valid UTF-8") from None
        if "\x00" in text:
            raise InvalidRequest(f"bundle file {_short(path)} contains a NUL character")
        if size > caps.max_file_bytes:
            raise InvalidRequest(f"bundle file {_short(path)} has {size} bytes, at most "
                                 f"{caps.max_file_bytes} allowed")
        total += size
    if total > caps.max_bundle_bytes:
        raise InvalidRequest(f"bundle has {total} bytes, at most {caps.max_bundle_bytes} allowed")
    # A directory and a file of the same name cannot both exist.
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    clash = dirs & set(files)
    if clash:
        raise InvalidRequest(f"bundle path {_short(sorted(clash)[0])} is both a file and "
                             "a directory")


def check_define(name: str, value: str | None, caps: Caps | None = None) -> None:
    """One macro definition: ``name`` matches ``DEFINE_NAME_RE``; ``value`` is
    None (a bare ``-DNAME``) or one line of text without NUL, within ``caps``."""
    caps = caps or Caps()
    if not isinstance(name, str) or not DEFINE_NAME_RE.fullmatch(name):
        raise InvalidRequest(f"define name {_short(name)} must match {DEFINE_NAME_RE.pattern}")
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidRequest(f"define {name} must have a string value or null")
    if any(c in value for c in "\n\r\x00"):
        raise InvalidRequest(f"define {name} value must be one line without NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot reach clang's argv
        raise InvalidRequest(f"define {name} value is not valid UTF-8") from None
    if len(value) > caps.max_define_value:
        raise InvalidRequest(f"define {name} value is longer than {caps.max_define_value}")


def check_defines(defines: Mapping[str, str | None] | None, caps: Caps | None = None) -> dict:
    """Macro definitions (NAME -> value or None), each as ``check_define``
    says, at most ``caps.max_defines``; returns them as a new dict."""
    caps = caps or Caps()
    defines = dict(defines or {})
    if len(defines) > caps.max_defines:
        raise InvalidRequest(f"{len(defines)} defines given, at most {caps.max_defines} allowed")
    for name, value in defines.items():
        check_define(name, value, caps)
    return defines


def define_args(defines: Mapping[str, str | None]) -> list[str]:
    """``-DNAME`` / ``-DNAME=VALUE`` arguments in a stable order.

    Each is one argv element starting with ``-D``, so no value can become a
    separate compiler flag.
    """
    return [f"-D{n}" if v is None else f"-D{n}={v}" for n, v in sorted(defines.items())]
