"""lbc.h in the kernel: pyLCC's accessor, byte order helpers and log2 histogram slots."""

from __future__ import annotations

import os
import sys

import pytest

from kutil import trigger

pytestmark = pytest.mark.bpf


def test_lbc_h_helpers(load):
    tool = load("lbc_h.bpf.c")
    values = [0, 1, 2, 3, 4, 1023, 1024, 1 << 40]
    tool.bss.values = values
    trigger()
    assert tool.bss.tgid_read == os.getpid()  # _(task->tgid)
    # network order in memory, whatever this machine's order is
    assert tool.bss.be16.to_bytes(2, sys.byteorder) == b"\x12\x34"
    assert tool.bss.be32.to_bytes(4, sys.byteorder) == b"\x12\x34\x56\x78"
    assert tool.bss.back16 == 0xBEEF
    hist = {slot: n for slot, n in tool.maps["hist"].items() if n}
    # slot 0 holds 0 and 1; slot k holds [2^k, 2^(k+1))
    assert hist == {0: 2, 1: 2, 2: 1, 9: 1, 10: 1, 40: 1}
    assert tool.maps["counts"][os.getpid()] == 1
    trigger()
    assert tool.maps["counts"][os.getpid()] == 2
