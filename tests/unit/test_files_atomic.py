"""lcc._files.write_atomic: whole files, and never a write through what was
already at its (predictable) temporary name."""

from __future__ import annotations

import os
import threading

from lcc._files import write_atomic


def _tmp_name(path) -> str:
    return f"{path}.{os.getpid()}-{threading.get_ident()}.tmp"


def test_writes_the_whole_file_with_its_mode(tmp_path):
    target = tmp_path / "sub" / "file"
    write_atomic(target, b"one")
    write_atomic(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["file"]


def test_a_symlink_at_the_temporary_name_is_not_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "cache" / "entry"
    target.parent.mkdir()
    os.symlink(victim, _tmp_name(target))

    write_atomic(target, b"new entry")

    assert victim.read_bytes() == b"precious"
    assert target.read_bytes() == b"new entry" and not target.is_symlink()
    assert sorted(p.name for p in target.parent.iterdir()) == ["entry"]


def test_a_leftover_temporary_file_is_replaced(tmp_path):
    target = tmp_path / "entry"
    with open(_tmp_name(target), "wb") as f:
        f.write(b"half of an older write")
    write_atomic(target, b"whole")
    assert target.read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["entry"]
