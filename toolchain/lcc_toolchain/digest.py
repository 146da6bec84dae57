"""The bundle digest: one canonical hash of a source bundle, for both sides.

The lcc client keys its artifact cache with it (``lcc.bundle.Bundle.digest``)
and the compile service keys its own with it, so a bundle hashes the same
wherever it is compiled.  Standard library only, cheap to import: a tool
computes it on every start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

__all__ = ["bundle_digest"]


def bundle_digest(main: str, files: Mapping[str, str]) -> str:
    """sha256 (hex) of the canonical JSON of a bundle: ``main`` and ``files``
    (relative path -> text) sorted by path, compact, UTF-8, non-ASCII kept."""
    canon = json.dumps({"main": main, "files": dict(sorted(files.items()))},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()
