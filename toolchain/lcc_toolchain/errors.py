"""Errors raised by the toolchain, and the ``Diagnostic`` record they carry.

The hierarchy::

    ToolchainError              the toolchain could not do it (.message, .hint)
     ├── CompileFailed          clang rejected the bundle or hit a limit (.diagnostics, .log)
     ├── ToolMissing            clang, bpftool or lbc.h is not installed here
     ├── BtfUnavailable         a BTF file cannot be read, or bpftool cannot use it
     └── InvalidRequest         (ValueError) a bundle, arch, define, release or digest
                                breaks the rules of ``lcc_toolchain.validation``

Each side maps these to its own: the compile service to HTTP replies
(``lcc_server.app``), the lcc client to ``lcc.errors`` (its local compile
backend).  ``lcc.errors`` re-exports ``Diagnostic``, so there is one class.

Every message is one sentence that says what failed; ``hint`` says what to
do next and is appended to ``str()``.  This module imports nothing, so that
``lcc.errors`` can import it at no cost to a tool's start-up.
"""

from __future__ import annotations

__all__ = [
    "BtfUnavailable",
    "CompileFailed",
    "Diagnostic",
    "InvalidRequest",
    "ToolMissing",
    "ToolchainError",
]


class ToolchainError(Exception):
    """Base class of every error the toolchain raises on purpose."""

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


class Diagnostic:
    """One compiler message, with the path relative to the source bundle.

    Read-only; equal to (and hashed like) another with the same fields.
    ``severity`` is clang's: "error", "warning", "note", "fatal error".
    """

    __slots__ = ("file", "line", "column", "severity", "message")
    _fields = __slots__

    def __init__(self, file: str, line: int, column: int, severity: str, message: str) -> None:
        for name, value in zip(self._fields, (file, line, column, severity, message)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field '{name}' of a read-only Diagnostic")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}' of a read-only Diagnostic")

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__qualname__}({shown})"

    def __reduce__(self) -> tuple:  # pickling and copy
        return type(self), self._values()

    def to_dict(self) -> dict:
        return dict(zip(self._fields, self._values()))

    @classmethod
    def from_dict(cls, d: dict) -> Diagnostic:
        return cls(
            file=str(d.get("file", "")),
            line=int(d.get("line", 0)),
            column=int(d.get("column", 0)),
            severity=str(d.get("severity", "error")),
            message=str(d.get("message", "")),
        )

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"


class CompileFailed(ToolchainError):
    """clang rejected the source, or a limit stopped it; ``diagnostics`` lists
    what it said and ``log`` holds its (scrubbed, truncated) output.

    The first error is appended to ``message`` when not already in it.
    """

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None,
                 log: str = "", *, hint: str | None = None) -> None:
        self.diagnostics = list(diagnostics or [])
        self.log = log
        first = next((d for d in self.diagnostics if "error" in d.severity), None)
        if first is not None and str(first) not in message:
            message = f"{message}: {first}"
        super().__init__(message, hint=hint)


class ToolMissing(ToolchainError):
    """A tool the toolchain needs (clang, bpftool) or lbc.h is not installed."""

    hint = ("install clang, llvm, bpftool and libbpf-dev (Debian: apt-get install clang llvm "
            "bpftool libbpf-dev), or point LCC_SERVER at a compile service")


class BtfUnavailable(ToolchainError):
    """A BTF file cannot be read, or bpftool cannot turn it into what is needed."""


class InvalidRequest(ToolchainError, ValueError):
    """A request field breaks the rules; the message names the field."""
