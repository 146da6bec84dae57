"""A typed tool script, as a mypy user writes one, type-checks against lcc.

lcc ships ``py.typed``; its package resolves names lazily at run time, and a
type checker must still see ``ClbcBase`` as a class, not ``Any``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                                reason="mypy is not installed (the dev extra has it)")

CLIENT = Path(__file__).resolve().parents[2] / "client"

TOOL = '''\
from lcc import ClbcBase, Fallback, RingBuffer


class Opens(ClbcBase):
    fallback = Fallback("fentry_open", "tp_open")

    def __init__(self, pid: int) -> None:
        super().__init__("opens", rodata={"target_pid": pid})

    def count(self) -> int:
        return len(self.maps["counts"])

    def ring(self) -> RingBuffer:
        return self.maps["events"].open_ring_buffer(lambda e: None)


def run(pid: int) -> int:
    with Opens(pid) as tool:
        return tool.count()
'''


def _mypy(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    (tmp_path / "tool.py").write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--disallow-subclassing-any", "--disallow-untyped-defs",
         "--follow-imports=silent", "--no-incremental", "tool.py"],
        cwd=tmp_path, capture_output=True, text=True,
        env={"MYPYPATH": str(CLIENT), "PATH": "/usr/bin:/bin"})


def test_a_typed_tool_subclasses_clbcbase_cleanly(tmp_path):
    r = _mypy(tmp_path, TOOL)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_sees_lcc_types(tmp_path):
    """The control: a call the class does not have is an error, so ClbcBase is not Any."""
    r = _mypy(tmp_path, TOOL + "\n\ndef bad(t: Opens) -> None:\n    t.no_such_method()\n")
    assert r.returncode == 1 and '"Opens" has no attribute "no_such_method"' in r.stdout
