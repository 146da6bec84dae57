"""Files written whole or not at all: readers in other threads or processes
never see half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes, *, prefix: str = ".tmp-",
                 mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file (named ``prefix``... in
    the same directory, created if needed) and a rename; ``mode`` (default
    0600) is the file's permissions.  On any failure the
    temporary file is removed and ``path`` is as it was; the error propagates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the rename must not publish a file still in the page cache
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
