"""The artifact store's disk accounting, shared by every process on one state directory.

A small SQLite database beside the artifacts (``<root>/ledger.sqlite``, WAL
mode) records each entry's bytes and when it was last used, and which request
keys name it; a kernel's derived files (``kernel:<btf sha256>``) are entries
too, so objects and derived files leave by one least-recently-used order, and
an entry pinned by a live process (a compile using those files) is never
chosen.  Every worker process of ``lcc server --workers N`` reads and
writes the same ledger inside one transaction per change, so the disk budget
is one budget, not one per process, and the least recently used entry is the
same for all of them.  A new ledger is filled from a scan of the directory
(oldest modification first), so a store made by an older version keeps its
entries.

Thread-safe (one connection behind a lock); any process may crash at any
point: a transaction either happened or did not.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["Ledger"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (digest TEXT PRIMARY KEY, bytes INTEGER NOT NULL,
                                    used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS keys (key TEXT PRIMARY KEY, digest TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS keys_by_digest ON keys (digest);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS pins (name TEXT NOT NULL, pid INTEGER NOT NULL,
                                 n INTEGER NOT NULL, PRIMARY KEY (name, pid));
"""

#: Entries whose name starts with this are a kernel's derived files, not objects.
DERIVED = "kernel:"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Ledger:
    """Entries (digest -> bytes, last use) and request keys of one artifact store."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def _tx(self, fn: Callable[[sqlite3.Connection], object]):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                out = fn(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return out

    def fill_once(self, scan: Callable[[], tuple[Iterable[tuple[str, int, float]],
                                                 Iterable[tuple[str, str]]]]) -> None:
        """Fill a new ledger from ``scan()`` -> ((digest, bytes, mtime), (key, digest))."""
        def fill(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM meta WHERE name = 'filled'").fetchone():
                return
            entries, keys = scan()
            db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", entries)
            db.executemany("INSERT OR REPLACE INTO keys VALUES (?, ?)", keys)
            db.execute("INSERT INTO meta VALUES ('filled', '1')")
        self._tx(fill)

    def add(self, digest: str, size: int, *, stored: bool, budget: int) -> list[tuple[str,
                                                                                      list[str]]]:
        """Count ``size`` more bytes for ``digest`` (``stored``: its object and
        metadata, counted once however often stored), mark it used now, and take
        least recently used other entries out until the total fits ``budget``;
        returns those victims with their request keys, for the caller to delete."""
        def add(db: sqlite3.Connection):
            row = db.execute("SELECT bytes FROM entries WHERE digest = ?", (digest,)).fetchone()
            added = 0 if stored and row is not None else size
            db.execute("INSERT INTO entries VALUES (?, ?, ?) ON CONFLICT(digest) DO UPDATE "
                       "SET bytes = bytes + ?, used = excluded.used",
                       (digest, added, time.time(), added))
            return _evict(db, digest, budget)
        return self._tx(add)

    def put(self, name: str, size: int, *, budget: int) -> list[tuple[str, list[str]]]:
        """Set the bytes of ``name`` to ``size``, mark it used now, and take least
        recently used other entries out until the total fits ``budget`` (as :meth:`add`)."""
        def put(db: sqlite3.Connection):
            db.execute("INSERT INTO entries VALUES (?, ?, ?) ON CONFLICT(digest) DO UPDATE "
                       "SET bytes = excluded.bytes, used = excluded.used",
                       (name, size, time.time()))
            return _evict(db, name, budget)
        return self._tx(put)

    def pin(self, name: str) -> None:
        """Keep ``name`` from eviction until :meth:`unpin` (or this process ends)."""
        self._tx(lambda db: db.execute(
            "INSERT INTO pins VALUES (?, ?, 1) ON CONFLICT(name, pid) DO UPDATE SET n = n + 1",
            (name, os.getpid())))

    def unpin(self, name: str) -> None:
        def unpin(db: sqlite3.Connection) -> None:
            db.execute("UPDATE pins SET n = n - 1 WHERE name = ? AND pid = ?",
                       (name, os.getpid()))
            db.execute("DELETE FROM pins WHERE n <= 0")
        self._tx(unpin)

    def names(self, prefix: str) -> dict[str, int]:
        """Entries whose name starts with ``prefix``: name -> bytes."""
        with self._lock:
            return dict(self._db.execute("SELECT digest, bytes FROM entries WHERE "
                                         "substr(digest, 1, ?) = ?", (len(prefix), prefix)))

    def touch(self, digest: str) -> None:
        with self._lock:
            self._db.execute("UPDATE entries SET used = ? WHERE digest = ?",
                             (time.time(), digest))

    def add_key(self, key: str, digest: str, size: int = 0) -> None:
        """Record request ``key`` -> ``digest``; the key's file (``size`` bytes)
        counts with its entry, once."""
        def add_key(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT digest FROM keys WHERE key = ?", (key,)).fetchone()
            db.execute("INSERT OR REPLACE INTO keys VALUES (?, ?)", (key, digest))
            if row is None or row[0] != digest:
                db.execute("UPDATE entries SET bytes = bytes + ? WHERE digest = ?",
                           (size, digest))
        self._tx(add_key)

    def forget(self, digest: str) -> None:
        def forget(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM entries WHERE digest = ?", (digest,))
            db.execute("DELETE FROM keys WHERE digest = ?", (digest,))
        self._tx(forget)

    def total(self, *, derived: bool | None = None) -> int:
        """Bytes of all entries; ``derived=False``: objects only, ``True``: derived only."""
        where = {None: "", True: " WHERE substr(digest, 1, ?) = ?",
                 False: " WHERE substr(digest, 1, ?) != ?"}[derived]
        args = () if derived is None else (len(DERIVED), DERIVED)
        with self._lock:
            return self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries" + where,
                                    args).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _evict(db: sqlite3.Connection, keep: str, budget: int) -> list[tuple[str, list[str]]]:
    """Take least recently used entries other than ``keep`` and those pinned by a
    live process out until the total fits ``budget``; returns them with their keys."""
    total = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM entries").fetchone()[0]
    victims: list[tuple[str, list[str]]] = []
    if total <= budget:
        return victims
    pinned = set()
    for name, pid in db.execute("SELECT name, pid FROM pins").fetchall():
        if _alive(pid):
            pinned.add(name)
        else:  # its process ended without unpinning
            db.execute("DELETE FROM pins WHERE name = ? AND pid = ?", (name, pid))
    for victim, vsize in db.execute(
            "SELECT digest, bytes FROM entries WHERE digest != ? ORDER BY used",
            (keep,)).fetchall():
        if total <= budget:
            break
        if victim in pinned:
            continue
        keys = [k for (k,) in db.execute("SELECT key FROM keys WHERE digest = ?", (victim,))]
        db.execute("DELETE FROM entries WHERE digest = ?", (victim,))
        db.execute("DELETE FROM keys WHERE digest = ?", (victim,))
        total -= vsize
        victims.append((victim, keys))
    return victims
