"""The running kernel's identity, which goes into every cache key."""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from lcc.errors import BtfError
from lcc.compile.kernel import btf_identity, parse_build_id, read_btf, this_kernel


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    def pad(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 4)

    return struct.pack("=III", len(name), len(desc), ntype) + pad(name) + pad(desc)


def test_build_id_is_found_among_other_notes():
    notes = (note(b"Xen\0", 18, b"\0" * 8) + note(b"GNU\0", 3, bytes.fromhex("abf9ec0e"))
             + note(b"Linux\0", 6, b"6.1\0"))

    assert parse_build_id(notes) == "abf9ec0e"


@pytest.mark.parametrize("notes", [b"", b"\x04\x00", note(b"GNU\0", 1, b"abi"),
                                   note(b"Linux\0", 3, b"\x01\x02"),
                                   note(b"GNU\0", 3, b"\x01\x02\x03\x04")[:-2]])
def test_no_build_id(notes):
    assert parse_build_id(notes) is None


def test_identity_prefers_build_id_then_btf_hash(tmp_path):
    notes = tmp_path / "notes"
    btf = tmp_path / "vmlinux"
    btf.write_bytes(b"\x9f\xeb" + b"x" * 100)

    notes.write_bytes(note(b"GNU\0", 3, b"\xaa\xbb"))
    assert btf_identity(notes_path=str(notes), btf_path=str(btf)) == "build-id:aabb"
    notes.write_bytes(b"")
    assert btf_identity(notes_path=str(notes), btf_path=str(btf)) == \
        "sha256:" + hashlib.sha256(btf.read_bytes()).hexdigest()
    assert btf_identity(notes_path=str(notes), btf_path=str(tmp_path / "none")) is None


def test_this_kernel():
    me = this_kernel()

    assert (me.release, me.arch) == (os.uname().release, os.uname().machine)
    assert me.has_btf == os.path.exists("/sys/kernel/btf/vmlinux")
    if me.has_btf:
        assert me.btf_id and me.btf_id.split(":")[0] in ("build-id", "sha256")
        assert me.btf_path == "/sys/kernel/btf/vmlinux"


def test_read_btf_without_btf_says_what_to_do(tmp_path):
    with pytest.raises(BtfError, match="no BTF"):
        read_btf(str(tmp_path / "vmlinux"))
