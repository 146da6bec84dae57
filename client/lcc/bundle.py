"""The source bundle: a program's main ``.bpf.c`` and the local headers it includes.

A bundle is what gets compiled, hashed and sent to a compile service: a
mapping of relative POSIX paths to text.  :meth:`Bundle.from_path` gathers
the main file and every ``#include "..."`` it reaches, recursively, relative
to the including file; system includes (``<...>``) and headers that lcc's
toolchain provides (``lbc.h``, ``vmlinux.h``) stay out.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
from dataclasses import dataclass, field

from .errors import LccError

_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)
PROVIDED = frozenset({"lbc.h", "vmlinux.h"})


@dataclass(frozen=True)
class Bundle:
    """``main`` names the file to compile; ``files`` maps relative paths to text."""

    main: str
    files: dict[str, str] = field(default_factory=dict)

    def digest(self) -> str:
        """sha256 over a canonical JSON form; equal bundles have equal digests."""
        blob = json.dumps({"main": self.main, "files": dict(sorted(self.files.items()))},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"main": self.main, "files": dict(self.files)}

    @classmethod
    def from_dict(cls, d: dict) -> "Bundle":
        return cls(main=str(d["main"]), files={str(k): str(v) for k, v in d["files"].items()})

    @classmethod
    def from_string(cls, text: str, name: str = "prog.bpf.c",
                    base_dir: str | None = None) -> "Bundle":
        """A bundle from source text; its local includes are read from ``base_dir``."""
        files = {name: text}
        if base_dir:
            _gather(text, name, base_dir, files)
        return cls(main=name, files=files)

    @classmethod
    def from_path(cls, path: str) -> "Bundle":
        """The file at ``path`` plus every local header it includes."""
        path = os.path.abspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise LccError(f"cannot read BPF source {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise LccError(f"BPF source {path} is not UTF-8 text") from None
        name = os.path.basename(path)
        files = {name: text}
        _gather(text, name, os.path.dirname(path), files)
        return cls(main=name, files=files)


def _gather(text: str, rel: str, root: str, files: dict[str, str], depth: int = 0) -> None:
    if depth > 32:
        raise LccError(f"includes nest deeper than 32 levels at {rel}")
    here = posixpath.dirname(rel)
    for inc in _INCLUDE.findall(text):
        if inc in PROVIDED:
            continue
        child = posixpath.normpath(posixpath.join(here, inc))
        if child.startswith("../") or posixpath.isabs(child):
            raise LccError(f"{rel} includes {inc!r}, which is outside the tool's directory",
                           hint="keep a tool's headers in its directory or below it")
        if child in files:
            continue
        full = os.path.join(root, *child.split("/"))
        if not os.path.exists(full):
            continue  # maybe a header on the include path; the compiler will say
        with open(full, encoding="utf-8") as f:
            files[child] = f.read()
        _gather(files[child], child, root, files, depth + 1)
