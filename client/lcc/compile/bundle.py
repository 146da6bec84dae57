"""The source bundle: a program's main ``.bpf.c`` and the local headers it includes.

A bundle is what gets compiled, hashed and sent to a compile service: a
mapping of relative POSIX paths to text.  :meth:`Bundle.from_path` gathers
the main file and every ``#include "..."`` it reaches, recursively, so that
multi-file tools in the style of libbpf-tools (``x.bpf.c`` + ``x.h`` +
``maps.bpf.h`` + ``bits.bpf.h``) compile anywhere.  Headers are looked up as
clang looks up quoted includes in the compile service: beside the including
file first, then at the bundle's root (the main file's directory).

Left out, because the compiler finds them elsewhere: ``<...>`` includes,
headers lcc's toolchain provides (``lbc.h``, ``vmlinux.h``), and quoted
includes that exist nowhere in the tool's directory (e.g.
``"bpf/bpf_helpers.h"``).  Includes inside comments are ignored.  A quoted
include that leaves the tool's directory (``"../x.h"``, ``"/etc/x"``) is an
error: the service would refuse it, and the bundle would not be self-contained.
So is a header that is a symbolic link (or lies under one) resolving outside
the tool's directory: its target's contents would be sent to the service.
Links that stay inside the directory are followed.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from dataclasses import dataclass, field

from lcc_toolchain.digest import bundle_digest

from ..errors import LccError

__all__ = ["MAX_INCLUDE_DEPTH", "PROVIDED", "Bundle"]

log = logging.getLogger("lcc.bundle")

PROVIDED = frozenset({"lbc.h", "vmlinux.h"})
MAX_INCLUDE_DEPTH = 32

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"\n]+)"', re.M)
# String/char literals are kept so that a "/*" inside one starts no comment.
_COMMENT_OR_LITERAL = re.compile(
    r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?(?:\*/|\Z)|//[^\n]*', re.S)


def _strip_comments(text: str) -> str:
    """``text`` with comments blanked out; line numbers stay where they were."""
    def repl(m: re.Match) -> str:
        s = m.group(0)
        if s.startswith("/*"):
            return "\n" * s.count("\n") or " "
        if s.startswith("//"):
            return " "
        return s
    return _COMMENT_OR_LITERAL.sub(repl, text)


def local_includes(text: str) -> list[str]:
    """The ``#include "..."`` names in C source, in order, comments ignored."""
    return _INCLUDE.findall(_strip_comments(text))


@dataclass(frozen=True)
class Bundle:
    """``main`` names the file to compile; ``files`` maps relative POSIX paths to text."""

    main: str
    files: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 over a canonical JSON form; equal bundles have equal digests.

        ``lcc_toolchain.digest.bundle_digest``, which the compile service
        keys its cache with too.
        """
        return bundle_digest(self.main, self.files)

    def __hash__(self) -> int:
        return hash(self.digest())

    def to_dict(self) -> dict:
        return {"main": self.main, "files": dict(self.files)}

    @classmethod
    def from_dict(cls, d: dict) -> Bundle:
        return cls(main=str(d["main"]), files={str(k): str(v) for k, v in d["files"].items()})

    @classmethod
    def from_string(cls, text: str, name: str = "prog.bpf.c",
                    base_dir: str | None = None) -> Bundle:
        """A bundle from source text named ``name``; with ``base_dir``, its local
        includes are gathered from there as if the file lived in it."""
        files = {name: text}
        if base_dir:
            _gather(text, name, os.path.abspath(base_dir), files, 0)
        return cls(main=name, files=files)

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> Bundle:
        """The file at ``path`` plus every local header it reaches.

        Raises :class:`LccError` when a file cannot be read, is not UTF-8,
        includes nest deeper than :data:`MAX_INCLUDE_DEPTH`, or an include
        leaves the file's directory.
        """
        path = os.path.abspath(os.fspath(path))
        name = os.path.basename(path)
        files = {name: _read(path, name)}
        _gather(files[name], name, os.path.dirname(path), files, 0)
        return cls(main=name, files=files)


def _read(full: str, rel: str) -> str:
    try:
        with open(full, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise LccError(f"BPF source {rel} is not UTF-8 text") from None
    except OSError as e:
        raise LccError(f"cannot read BPF source {full}: {e.strerror}") from None


def _resolve(inc: str, includer: str, root: str) -> str | None:
    """The bundle path of quoted include ``inc`` seen in ``includer``, or None
    when it is not a file of the tool's directory."""
    here = posixpath.dirname(includer)
    beside = posixpath.normpath(posixpath.join(here, inc))
    if posixpath.isabs(inc) or _escapes(beside):
        raise LccError(f"{includer} includes \"{inc}\", which is outside the tool's directory",
                       hint="keep a tool's headers in its directory or below it")
    candidates = [beside]
    at_root = posixpath.normpath(inc)
    if here and not _escapes(at_root):
        candidates.append(at_root)
    for rel in candidates:
        full = os.path.join(root, *rel.split("/"))
        if os.path.isfile(full):
            _check_inside(full, rel, includer, inc, root)
            return rel
    return None


def _check_inside(full: str, rel: str, includer: str, inc: str, root: str) -> None:
    """Raise :class:`LccError` when ``full`` resolves (through symbolic links)
    outside ``root``."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(full)
    if os.path.commonpath([real_root, target]) != real_root:
        raise LccError(f"{includer} includes \"{inc}\", and {rel} is a symbolic link to "
                       f"{target}, outside the tool's directory; its contents are not sent",
                       hint="copy the header into the tool's directory, or link to a file "
                            "inside it")


def _escapes(rel: str) -> bool:
    return rel == ".." or rel.startswith("../") or posixpath.isabs(rel)


def _gather(text: str, rel: str, root: str, files: dict[str, str], depth: int) -> None:
    if depth >= MAX_INCLUDE_DEPTH:
        raise LccError(f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels at {rel}")
    for inc in local_includes(text):
        if inc in PROVIDED:
            continue
        child = _resolve(inc, rel, root)
        if child is None:
            log.debug("%s: \"%s\" is not in the tool's directory; left to the compiler",
                      rel, inc)
            continue
        if child in files:
            continue
        files[child] = _read(os.path.join(root, *child.split("/")), child)
        _gather(files[child], child, root, files, depth + 1)
