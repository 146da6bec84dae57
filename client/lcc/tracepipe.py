"""The kernel's trace pipe, where ``bpf_printk()`` writes.

``<tracefs>/trace_pipe`` is one system-wide stream: every process that
reads it takes lines away from the others, and every program's
``bpf_printk()`` lands in it.  A reader therefore filters what it gets (by
pid, by a marker in the message) rather than expecting only its own lines.

:class:`TracePipe` owns a non-blocking descriptor on it and hands out
whole lines; :func:`parse` splits a line into :class:`TraceLine` fields, as
BCC's ``trace_fields()`` does.  Reading needs root (or read access to tracefs).
"""

from __future__ import annotations

import errno
import os
import re
import select
from typing import NamedTuple

from .errors import LccError, NotSupported

__all__ = ["TraceLine", "TracePipe", "parse"]


class TraceLine(NamedTuple):
    """One trace_pipe line: BCC's ``(task, pid, cpu, flags, ts, msg)``."""

    task: str
    pid: int
    cpu: int
    flags: str
    ts: float
    msg: str


# "  <comm>-<pid>  [(tgid)] [cpu] [flags] <ts>: <function>: <msg>"; the tgid and
# flags columns depend on the record-tgid and irq-info trace options.
_LINE = re.compile(r"^\s*(?P<task>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?"
                   r"\[(?P<cpu>\d+)\]\s+(?:(?P<flags>\S+)\s+)?(?P<ts>\d+\.\d+):\s+"
                   r"(?P<func>[^:]*):\s?(?P<msg>.*)$")


def parse(line: str) -> TraceLine | None:
    """The fields of a trace_pipe line, or None for a line that is not an event
    (``CPU:3 [LOST 12 EVENTS]``, a torn line)."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    return TraceLine(m["task"], int(m["pid"]), int(m["cpu"]), m["flags"] or "",
                     float(m["ts"]), m["msg"])


class TracePipe:
    """A reader of ``<tracefs>/trace_pipe`` (``path``: another file, for tests).

    Owns one descriptor; :meth:`close` is idempotent and ``with`` works.
    Raises :class:`~lcc.errors.NotSupported` when tracefs is not mounted and
    :class:`~lcc.errors.LccError` (the OSError as ``__cause__``) when the pipe
    cannot be opened.
    """

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            from .features import tracefs_dir
            tracefs = tracefs_dir()
            if tracefs is None:
                raise NotSupported("tracefs", "tracefs is not mounted, so bpf_printk() "
                                   "output cannot be read",
                                   hint="mount -t tracefs nodev /sys/kernel/tracing")
            path = os.path.join(tracefs, "trace_pipe")
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:  # kept as __cause__, with its errno
            raise LccError(f"cannot open {path}: {e.strerror or e}",
                           hint="reading bpf_printk() output needs root" if e.errno in
                           (errno.EACCES, errno.EPERM) else None) from e
        self._partial = b""
        self._pending: list[str] = []

    def fileno(self) -> int:
        if self._fd is None:
            raise LccError(f"{self.path} is closed")
        return self._fd

    def read_lines(self) -> list[str]:
        """The whole lines waiting now (without their newline), never blocking;
        a line still being written is kept for the next call."""
        chunks = [self._partial]
        while True:
            try:
                data = os.read(self.fileno(), 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
        *lines, self._partial = b"".join(chunks).split(b"\n")
        return [ln.decode("utf-8", "replace") for ln in lines]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: for ever) for something to read."""
        ready, _, _ = select.select([self.fileno()], [], [], timeout)
        return bool(ready)

    def readline(self, timeout: float | None = None) -> str | None:
        """The next line, waiting up to ``timeout`` seconds (None: for ever);
        None when nothing came in time."""
        while not self._pending:
            self._pending = self.read_lines()
            if not self._pending and not self.wait(timeout):
                return None
        return self._pending.pop(0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "TracePipe":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
