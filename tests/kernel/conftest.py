"""Fixtures for kernel tests: compiled test programs and loaded tools.

``prog_object(name, **defines)`` compiles ``tests/progs/<name>`` once per
session through the shared ``compile_prog`` fixture (lcc's normal compile
path).  ``load(name, **kw)`` makes a :class:`lcc.ClbcBase` from it and closes
it after the test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lcc import ClbcBase

PROGS = Path(__file__).resolve().parent.parent / "progs"


@pytest.fixture(scope="session")
def prog_object(compile_prog):
    cache: dict[tuple, bytes] = {}

    def get(name: str, **defines: str | None) -> bytes:
        key = (name, tuple(sorted(defines.items())))
        if key not in cache:
            cache[key] = compile_prog(name, defines or None)
        return cache[key]

    return get


@pytest.fixture
def load(prog_object):
    """Load a test program as a ClbcBase; everything it opens is closed after the test."""
    opened: list[ClbcBase] = []

    def _load(name: str, *, defines: dict | None = None, **kw) -> ClbcBase:
        if "target_pid" in (PROGS / name).read_text():
            kw.setdefault("rodata", {"target_pid": os.getpid()})
        tool = ClbcBase(name.removesuffix(".bpf.c"), obj=prog_object(name, **(defines or {})),
                        **kw)
        opened.append(tool)
        return tool

    yield _load
    for tool in opened:
        tool.close()

