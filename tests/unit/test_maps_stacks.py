"""StackTraceMap.frames without a kernel: printable frames for any id, never an exception."""

from __future__ import annotations

import errno
import sys

import pytest
from lcc import KeyNotFound, _libbpf, symbols
from lcc.maps import StackTraceMap

from test_symbols import FAKE_KALLSYMS


class FakeObject:
    def map_fd(self, name: str) -> int:
        return 42

    def _check_open(self) -> None:
        pass


class FakeSpec:
    name = "stacks"
    type, type_name = 7, "stack_trace"
    key_size, value_size, max_entries = 4, 8 * 4, 16


@pytest.fixture
def stacks(monkeypatch, tmp_path):
    """A stack map holding stack 5 (two kernel frames, zero-padded); lookups recorded."""
    held = {5: [0xFFFFFFFF81000204, 0xFFFFFFFFC0001002, 0, 0]}
    keys: list[bytes] = []

    def lookup(fd, key, size):
        keys.append(key)
        addrs = held.get(int.from_bytes(key, sys.byteorder))
        return None if addrs is None else b"".join(a.to_bytes(8, sys.byteorder) for a in addrs)

    monkeypatch.setattr(_libbpf, "map_lookup", lookup)
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(FAKE_KALLSYMS)
    monkeypatch.setattr(symbols, "kernel_symbols", lambda: symbols.KernelSymbols(kallsyms))
    m = StackTraceMap(FakeObject(), FakeSpec())
    m.keys_looked_up = keys
    return m


def test_frames_of_a_kernel_stack_are_symbolized(stacks):
    assert stacks.frames(5) == ["helper+0x4", "mod_fn+0x2 [nf_tables]"]
    assert stacks.keys_looked_up == [(5).to_bytes(4, sys.byteorder)]  # native byte order


def test_user_stacks_are_hex_addresses(stacks):
    assert stacks.frames(5, user=True) == ["0xffffffff81000204", "0xffffffffc0001002"]


def test_a_negative_id_gives_one_marker_frame_or_nothing(stacks):
    assert stacks.frames(-errno.EFAULT) == ["[no stack: error -14 (EFAULT)]"]
    assert stacks.frames(-errno.EFAULT, markers=False) == []
    # The same error read back from an unsigned member of an event or a key
    assert stacks.frames((1 << 64) - errno.EEXIST) == ["[no stack: error -17 (EEXIST)]"]
    assert stacks.frames((1 << 32) - errno.EFAULT) == ["[no stack: error -14 (EFAULT)]"]
    assert stacks.keys_looked_up == []  # never asked the kernel


def test_a_missing_id_gives_one_marker_frame_or_nothing(stacks):
    assert stacks.frames(3) == ["[stack gone]"]
    assert stacks.frames(3, markers=False) == []
    with pytest.raises(KeyNotFound):
        stacks.stack(3)  # the strict form
    with pytest.raises(KeyNotFound):
        stacks.stack(-14)


def test_hidden_kallsyms_gives_hex_frames(stacks, monkeypatch):
    def unavailable():
        raise symbols.SymbolsUnavailable("kernel addresses are hidden")

    monkeypatch.setattr(symbols, "kernel_symbols", unavailable)
    assert stacks.frames(5) == ["0xffffffff81000204", "0xffffffffc0001002"]
