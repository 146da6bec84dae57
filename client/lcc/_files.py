"""Files written whole: a temporary file beside the target, then a rename.

Readers see the old file or the whole new one, never a part.  The temporary
name carries the process and thread, so writers in one process do not meet;
no ``tempfile`` import, because the cache-hit start path writes through here.
"""

from __future__ import annotations

import os
import threading

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` (its directory made if missing) with ``mode``.

    Raises ``OSError``; the temporary file is removed when the write fails.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"
    # The name is predictable: never open what is already there (a symlink
    # planted at it would redirect the write), only a file made here.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(tmp, flags, mode)
        except FileExistsError:  # left by a writer that died (same pid and thread id)
            os.unlink(tmp)
            fd = os.open(tmp, flags, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # not narrowed by the umask
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
