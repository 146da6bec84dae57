"""What the parts of a state directory hold on disk, for the one disk budget.

``StateUsage(state_dir)`` measures BTF uploads (``btf/``) and the files
derived per kernel BTF (``work/vmlinux``: vmlinux.h, ``work/pch``: precompiled
headers); compiled objects and tailored BTF are the artifact store's own
(``ArtifactStore.disk_usage``).  ``reserved()`` is what the artifact store
leaves room for, the BTF uploads: the derived files are entries of the
artifact store's ledger (``lcc_server.derived``), evicted with the objects, so
the budget (``LCC_MAX_ARTIFACT_MB``) covers all of it.
Measuring walks those directories, so a result is reused for ``max_age``
seconds.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

__all__ = ["StateUsage"]

#: part name -> directories under the state directory
PARTS = {"btf_uploads": ("btf",), "derived": ("work/vmlinux", "work/pch")}


def _du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class StateUsage:
    def __init__(self, state_dir: Path, *, max_age: float = 5.0) -> None:
        self.state_dir = Path(state_dir)
        self.max_age = max_age
        self._lock = threading.Lock()
        self._at = -1e9
        self._parts: dict[str, int] = {}

    def parts(self) -> dict[str, int]:
        """Bytes of each part of ``PARTS``."""
        with self._lock:
            if time.monotonic() - self._at > self.max_age:
                self._parts = {part: sum(_du(self.state_dir / d) for d in dirs)
                               for part, dirs in PARTS.items()}
                self._at = time.monotonic()
            return dict(self._parts)

    def reserved(self) -> int:
        """Bytes of the BTF uploads (never evicted; ``LCC_MAX_BTF_RELEASES`` bounds them)."""
        return self.parts()["btf_uploads"]
