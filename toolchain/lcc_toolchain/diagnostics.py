"""Turn clang's stderr into ``Diagnostic`` records, without server paths.

``PathScrubber`` rewrites every server directory a compile used (its temp
directory, the include roots, the vmlinux.h cache) so that the text sent back
names files as the bundle does (``prog.bpf.c``, ``include/x.h``) or as an
include would (``lbc.h``, ``vmlinux.h``, ``bpf/bpf_helpers.h``).
``parse(log)`` reads ``file:line:col: severity: message`` lines, plus
location-less ``error: ...`` lines, into diagnostics in order.
``hide_denied(log)`` words "cannot open file 'X': Permission denied" (a file
the sandbox forbids) as clang words a missing one, so that no answer tells
whether a path exists on the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lcc_toolchain.errors import Diagnostic

__all__ = ["MAX_LOG_CHARS", "PathScrubber", "hide_denied", "parse", "truncate"]

#: Logs sent back are cut to this many characters.
MAX_LOG_CHARS = 64 * 1024

_SEVERITIES = "fatal error|error|warning|note|remark"
_LOCATED = re.compile(r"^(?P<file>[^\s:][^:\n]*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s"
                      rf"(?P<sev>{_SEVERITIES}):\s(?P<msg>.*)$")
_UNLOCATED = re.compile(r"^(?:[\w.+-]*clang[\w.+-]*:\s)?"
                        r"(?P<sev>fatal error|error|warning):\s(?P<msg>.*)$")


# clang's words for a file it found but may not read (errno text after the colon).
_DENIED = re.compile(r"cannot open file '(?P<path>[^'\n]*)': [A-Z][\w ]*")
# The caret line under a "file not found" (clang underlines a missing name
# with ~, not a forbidden one).
_NOT_FOUND_CARET = re.compile(r"(' file not found\n[^\n]*\n *\^)~+")


def hide_denied(log: str) -> str:
    """``log`` with every unreadable file reported as not found."""
    return _NOT_FOUND_CARET.sub(r"\1", _DENIED.sub(lambda m: f"'{m['path']}' file not found",
                                                   log))


class PathScrubber:
    """Replaces server directories in text; longest directory first."""

    def __init__(self, roots: Iterable[tuple[str, str]]) -> None:
        # (directory, replacement prefix); "" makes paths under it relative.
        pairs = [(str(d).rstrip("/"), r) for d, r in roots if str(d).rstrip("/")]
        self._pairs = sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def __call__(self, text: str) -> str:
        for directory, repl in self._pairs:
            text = text.replace(directory + "/", repl)
            text = text.replace(directory, repl.rstrip("/") or ".")
        return text


def _clean_file(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


def parse(log: str) -> list[Diagnostic]:
    """Diagnostics in ``log`` (already scrubbed), in the order clang gave them."""
    out: list[Diagnostic] = []
    for line in log.splitlines():
        m = _LOCATED.match(line)
        if m:
            out.append(Diagnostic(file=_clean_file(m["file"]), line=int(m["line"]),
                                  column=int(m["col"] or 0), severity=m["sev"],
                                  message=m["msg"].strip()))
            continue
        m = _UNLOCATED.match(line)
        if m:
            out.append(Diagnostic(file="", line=0, column=0, severity=m["sev"],
                                  message=m["msg"].strip()))
    return out


def truncate(log: str, limit: int = MAX_LOG_CHARS) -> str:
    """``log`` cut to ``limit`` characters, saying so."""
    if len(log) <= limit:
        return log
    return log[:limit] + f"\n[... {len(log) - limit} more characters cut]\n"
