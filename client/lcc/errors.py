"""Errors raised by lcc, client and compile service alike.

The hierarchy::

    LccError
     ├── CompileError           clang rejected the bundle (.diagnostics, .log, .sources)
     ├── ToolchainMissing       no clang/bpftool here and no compile service named
     ├── CompileServiceError    the compile service answered an error or is unreachable
     │    └── UntrustedArtifact  what it sent is not signed by a trusted key, or not
     │                           what its signed manifest says (nothing is cached or loaded)
     ├── DockerUnavailable      no Docker engine (or SDK) to run the compile service in
     │    └── DockerImageMissing  the compile service image is not in the engine
     ├── CacheError             a cache entry could not be written
     ├── BtfError               kernel or object BTF missing or unusable
     ├── ClosedError            (ValueError) an lcc object was used after close()
     ├── SymbolsUnavailable     no symbols to read (kernel addresses hidden, not an ELF file)
     ├── SymbolNotFound         (KeyError) the ELF file does not define the symbol
     ├── BinaryNotFound         (FileNotFoundError) no executable or library of that name
     ├── UnknownSyscall         (KeyError) a syscall name or number this architecture lacks
     └── BpfError               (OSError) a bpf() operation failed; keeps errno
          ├── KeyNotFound        (KeyError) lookup/delete of a missing key
          ├── BpfPermissionError (PermissionError) EPERM/EACCES
          ├── NotSupported       this kernel lacks a feature (.feature)
          │    └── AttachPointMissing  the function/tracepoint does not exist
          └── ProgramLoadError   the verifier (or libbpf) rejected a program (.verifier_log)

``CompileWarning`` (a ``UserWarning``, not an error) carries a compiler
warning to Python's :mod:`warnings`.

Every message is one sentence that says what failed; ``hint`` says what to
do next and is appended to ``str()``.  Where lcc translates a lower-level
exception (an OSError, a dlopen failure), the original is kept as
``__cause__``.  The modules that raise them re-export their own
(``lcc.symbols.SymbolNotFound``, ``lcc.compile.docker.DockerUnavailable``...).
``Diagnostic`` (one compiler message) is ``lcc_toolchain.errors.Diagnostic``,
re-exported here.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from lcc_toolchain.errors import Diagnostic

__all__ = [
    "AttachPointMissing",
    "BinaryNotFound",
    "BpfError",
    "BpfPermissionError",
    "BtfError",
    "CacheError",
    "ClosedError",
    "CompileError",
    "CompileServiceError",
    "CompileWarning",
    "Diagnostic",
    "DockerImageMissing",
    "DockerUnavailable",
    "KeyNotFound",
    "LccError",
    "NotSupported",
    "ProgramLoadError",
    "SymbolNotFound",
    "SymbolsUnavailable",
    "ToolchainMissing",
    "UnknownSyscall",
    "UntrustedArtifact",
    "from_errno",
    "source_excerpt",
    "strerror",
    "verifier_hint",
    "verifier_source",
]


class LccError(Exception):
    """Base class of every error lcc raises on purpose."""

    hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class CompileError(LccError):
    """clang rejected the source; ``diagnostics`` lists what it said.

    ``message`` is one line (the first error appended); ``str()`` adds
    every diagnostic (up to :attr:`MAX_SHOWN`) on lines of its own, each
    followed by its source line and a caret under the column when
    ``sources`` (the bundle's files, path -> text, attached by
    :func:`lcc.compile.build`) holds the file.
    """

    #: Diagnostics ``str()`` shows; the rest are counted.
    MAX_SHOWN = 10

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None,
                 log: str = "", *, hint: str | None = None,
                 sources: dict[str, str] | None = None) -> None:
        self.diagnostics = list(diagnostics or [])
        self.log = log
        self.sources = dict(sources or {})
        first = next((d for d in self.diagnostics if "error" in d.severity), None)
        # The headline, without the first error that str() lists anyway.
        self.headline = message.removesuffix(f": {first}") if first is not None else message
        if first is not None and str(first) not in message:
            message = f"{message}: {first}"
        super().__init__(message, hint=hint)

    def __str__(self) -> str:
        if not self.diagnostics:
            return LccError.__str__(self)
        errors = sum("error" in d.severity for d in self.diagnostics)
        count = f"{errors} error{'s' if errors != 1 else ''}"
        lines = [f"{self.headline} ({count}):"]
        for d in self.diagnostics[:self.MAX_SHOWN]:
            lines.append(str(d))
            lines.extend(source_excerpt(self.sources.get(d.file), d.line, d.column))
        more = len(self.diagnostics) - self.MAX_SHOWN
        if more > 0:
            lines.append(f"... and {more} more diagnostic{'s' if more != 1 else ''} "
                         "(.log has them all)")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


def source_excerpt(text: str | None, line: int, column: int) -> list[str]:
    """Line ``line`` of ``text`` and a caret under ``column`` (1-based, clang's
    byte column), as clang draws them; [] when the line is not there."""
    if not text or line < 1:
        return []
    src = text.splitlines()
    if line > len(src):
        return []
    code = src[line - 1]
    gutter = f"{line:5d} | "
    out = [gutter + code]
    if column >= 1:
        prefix = code.encode()[:column - 1].decode(errors="ignore")
        pad = "".join(c if c == "\t" else " " for c in prefix)
        out.append(" " * (len(gutter) - 2) + "| " + pad + "^")
    return out


class CompileWarning(UserWarning):
    """A compiler warning about a tool's BPF C, issued with :func:`warnings.warn`
    when :class:`lcc.ClbcBase` compiles it (``-W error::lcc.CompileWarning``
    makes them fatal).  ``diagnostic``: clang's message; ``str()`` adds its
    source line and a caret when the source is at hand."""

    def __init__(self, diagnostic: Diagnostic, sources: dict[str, str] | None = None) -> None:
        self.diagnostic = diagnostic
        lines = [str(diagnostic), *source_excerpt((sources or {}).get(diagnostic.file),
                                                  diagnostic.line, diagnostic.column)]
        super().__init__("\n".join(lines))


class ToolchainMissing(LccError):
    """Nothing here can compile BPF C: no clang and no compile service configured."""

    hint = ("install clang, llvm, bpftool and libbpf-dev (Debian: apt-get install clang llvm "
            "bpftool libbpf-dev), or point LCC_SERVER at a compile service")


class CompileServiceError(LccError):
    """The compile service could not be reached or answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, detail: object = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.detail = detail


class UntrustedArtifact(CompileServiceError):
    """A compile service sent an object that lcc will not load: unsigned, signed
    by a key not trusted here, with a signature that does not verify, or not
    matching its signed manifest (another object, another request).

    ``key_id``: the fingerprint of the key that signed it, if it named one.
    """

    def __init__(self, message: str, *, key_id: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key_id = key_id


class DockerUnavailable(LccError):
    """No Docker engine can be used: the SDK is missing or the engine does not answer."""

    hint = ("start a Docker engine (in an lcc checkout: scripts/docker/engine.sh; or set "
            "DOCKER_HOST), or install clang to compile locally")


class DockerImageMissing(DockerUnavailable):
    """The compile service image is not in the local Docker engine."""

    hint = "build it in an lcc checkout with: scripts/docker/build.sh"


class CacheError(LccError):
    """The artifact cache could not be used."""


class BtfError(LccError):
    """BTF needed for this operation is missing or unusable."""


class ClosedError(LccError, ValueError):
    """An lcc object was used after ``close()``."""


class SymbolsUnavailable(LccError):
    """No symbols can be read: kernel addresses are hidden, or the file has none."""


class SymbolNotFound(LccError, KeyError):
    """The named symbol is not defined in the file."""

    def __init__(self, name: str, path: str | os.PathLike[str], *, hint: str | None = None) -> None:
        self.name = name
        self.path = str(path)
        super().__init__(f"symbol '{name}' is not defined in {self.path}", hint=hint)


class BinaryNotFound(LccError, FileNotFoundError):
    """No executable or library of that name was found."""


class UnknownSyscall(LccError, KeyError):
    """A syscall name or number that the table does not know."""


# libbpf's own error numbers (libbpf.h, enum libbpf_errno), above the kernel's.
_LIBBPF_ERRNO = {
    4000: "something wrong in libelf",
    4001: "not a valid BPF object file (bad ELF or BTF format)",
    4002: "the object has no or an invalid kernel version section",
    4003: "the object's endianness does not match this machine",
    4004: "internal libbpf error",
    4005: "relocation failed",
    4006: "the kernel failed to load the program",
    4007: "the kernel verifier rejected the program",
    4008: "the program is too big",
    4009: "the kernel version is wrong",
    4010: "the kernel does not support this program type",
    4011: "netlink answered from the wrong pid",
    4012: "netlink answered out of sequence",
    4013: "netlink message could not be parsed",
}


def strerror(err: int) -> str:
    """The text of a kernel errno or of one of libbpf's own error numbers (4000+)."""
    err = abs(int(err))
    return _LIBBPF_ERRNO.get(err) or os.strerror(err)


class BpfError(LccError, OSError):
    """A bpf() operation or a libbpf call failed.

    ``errno`` holds the positive error number, ``what`` names the operation.
    """

    def __init__(self, err: int, what: str, *, hint: str | None = None,
                 message: str | None = None) -> None:
        err = abs(int(err)) if err else 0
        msg = message or f"{what} failed: {strerror(err) if err else 'unknown error'}"
        LccError.__init__(self, msg, hint=hint)
        # OSError's attributes, set by hand so that str() stays ours.
        self.errno = err
        self.strerror = strerror(err) if err else None
        self.what = what

    def __str__(self) -> str:
        return LccError.__str__(self)

    def __reduce__(self):  # keep pickling (multiprocessing) working
        # Subclasses' own attributes (key, feature, verifier_log...) travel as state.
        return (self.__class__._rebuild, (self.errno, self.what, self.hint, self.message),
                dict(self.__dict__))

    @classmethod
    def _rebuild(cls, err, what, hint, message):
        obj = cls.__new__(cls)
        BpfError.__init__(obj, err, what, hint=hint, message=message)
        return obj


class KeyNotFound(BpfError, KeyError):
    """The key is not in the map."""

    def __init__(self, key: object = None, map_name: str = "", *, err: int = _errno.ENOENT,
                 message: str | None = None) -> None:
        self.key = key
        self.map_name = map_name
        where = f" in map '{map_name}'" if map_name else ""
        super().__init__(err, f"lookup{where}", message=message or f"key {key!r} not found{where}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class BpfPermissionError(BpfError, PermissionError):
    """The kernel refused the operation for lack of privilege."""

    hint = "run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)"


class NotSupported(BpfError):
    """This kernel (or the libbpf here) does not provide a feature."""

    def __init__(self, feature: str, message: str, *, err: int = _errno.EOPNOTSUPP,
                 hint: str | None = None) -> None:
        self.feature = feature
        super().__init__(err, feature, message=message, hint=hint)


class AttachPointMissing(NotSupported):
    """The function, tracepoint or symbol to attach to does not exist."""

    def __init__(self, kind: str, target: str, message: str, *, err: int = _errno.ENOENT,
                 hint: str | None = None) -> None:
        self.kind = kind
        self.target = target
        super().__init__(kind, message, err=err, hint=hint)


class ProgramLoadError(BpfError):
    """The kernel's verifier or libbpf rejected a program; ``verifier_log`` says why.

    ``str()`` is the verifier's last word, then the source line it was
    checking (``source``: ``(file, line, text)`` from the log's ``; text @
    file:line`` annotations, or None) and a hint for the common rejections
    (an unchecked lookup, an unbounded index, a program too large, a
    GPL-only helper, a helper the program type may not call).  The whole log
    stays in ``verifier_log``.
    """

    def __init__(self, err: int, program: str, verifier_log: str = "", *,
                 message: str | None = None, hint: str | None = None) -> None:
        self.program = program
        self.verifier_log = verifier_log
        self.source = verifier_source(verifier_log)
        if message is None:
            last = _last_log_line(verifier_log)
            if last:
                message = f"program '{program}' was rejected by the verifier: {last}"
            else:
                message = f"program '{program}' could not be loaded: {strerror(err)}"
        if hint is None:
            hint = verifier_hint(verifier_log)
        super().__init__(err, f"load of program '{program}'", message=message, hint=hint)

    def __str__(self) -> str:
        lines = [self.message]
        if self.source is not None:
            file, line, text = self.source
            lines.append(f"  at {file}:{line}: {text}")
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


def _last_log_line(log: str) -> str:
    """The most telling line of a verifier log: the last non-summary line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    skip = ("processed ", "verification time", "stack depth", "-- END", "max_states_per_insn")
    for ln in reversed(lines):
        if not ln.startswith(skip):
            return ln
    return ""


def verifier_source(log: str) -> tuple[str, int, str] | None:
    """The last source line a verifier log names, as ``(file, line, text)``.

    The kernel annotates the log with the program's BTF line info: ``; text
    @ file:line``.  Lines without text (``;  @ file:0``) are skipped.
    """
    for raw in reversed(log.splitlines()):
        ln = raw.strip()
        if not ln.startswith(";") or " @ " not in ln:
            continue
        text, _, where = ln[1:].rpartition(" @ ")
        file, _, num = where.rpartition(":")
        text = text.strip()
        if text and file and num.isdigit() and int(num) > 0:
            return file, int(num), text
    return None


#: The verifier's words for the common mistakes -> what to do (first match wins).
_VERIFIER_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("_or_null'", "or_null"),
     "the pointer may be NULL: check what bpf_map_lookup_elem() (or the helper) returned "
     "before using it, e.g. if (!v) return 0;"),
    (("unbounded memory access", "min value is negative", "max value is outside",
      "unbounded min value", "value is outside of the allowed memory range"),
     "bound the index or offset before using it (if (i >= N) return 0; or i & (N - 1)) so "
     "the verifier can prove every access stays inside the value"),
    (("BPF program is too large", "too large"),
     "the program has too many instructions or paths for the verifier: lower loop bounds, "
     "move work into a subprogram (__noinline) or a tail call, or use bpf_loop()"),
    (("cannot call GPL-restricted function",),
     'this helper is GPL-only: declare char LICENSE[] SEC("license") = "GPL";'),
    (("program of this type cannot use helper", "unknown func"),
     "this program type may not call that helper (or this kernel lacks it): use another "
     "helper, or another SEC() program type that allows it"),
)


def verifier_hint(log: str) -> str | None:
    """What to do about a verifier rejection, for the common ones; None otherwise."""
    last = _last_log_line(log)
    tail = "\n".join(log.splitlines()[-5:])
    for words, hint in _VERIFIER_HINTS:
        if any(w in last for w in words):
            return hint
    for words, hint in _VERIFIER_HINTS:  # the deciding line is not always the last one
        if any(w in tail for w in words):
            return hint
    return None


_BY_ERRNO: dict[int, type[BpfError]] = {
    _errno.EPERM: BpfPermissionError,
    _errno.EACCES: BpfPermissionError,
}


def from_errno(err: int, what: str, hint: str | None = None) -> BpfError:
    """Build the fitting BpfError subclass for a (positive or negative) errno."""
    err = abs(int(err))
    if err in (_errno.EOPNOTSUPP, _errno.ENOTSUP, 524):  # 524: the kernel's ENOTSUPP
        return NotSupported(what, f"{what} is not supported by this kernel", err=err, hint=hint)
    cls = _BY_ERRNO.get(err, BpfError)
    return cls(err, what, hint=hint)


def did_you_mean(name: str, names: list[str]) -> str:
    """``"; did you mean 'counts'?"`` for the closest of ``names``, else ""."""
    import difflib  # only on these error paths
    close = difflib.get_close_matches(name, names, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def __getattr__(name: str) -> object:
    # Diagnostic is one class, shared with the compile service; imported when
    # first asked for, since a tool that loads a cached object never needs it.
    if name == "Diagnostic":
        from lcc_toolchain.errors import Diagnostic
        globals()["Diagnostic"] = Diagnostic
        return Diagnostic
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
