"""The toolchain identity remembered across processes (lcc_toolchain.identity):
a new Toolchain runs no ``clang --version`` while clang, bpftool and the
headers keep their stats, and asks again when one changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lcc_toolchain.identity import FILE, identity_cached
from lcc_toolchain.toolchain import Toolchain

pytestmark = pytest.mark.toolchain

CLANG = shutil.which("clang")


@pytest.fixture
def counted_clang(tmp_path):
    """A clang that appends each of its runs to a log, then is the real one."""
    if CLANG is None:
        pytest.skip("clang is not installed")
    log = tmp_path / "runs.log"
    wrapper = tmp_path / "bin" / "clang"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {CLANG} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def runs(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_new_toolchain_reads_the_saved_identity(tmp_path, counted_clang):
    clang, log = counted_clang
    work = tmp_path / "work"

    first = Toolchain(clang=str(clang), work_dir=work, sandbox=False).identity()
    second = Toolchain(clang=str(clang), work_dir=work, sandbox=False).identity()

    assert runs(log) == ["--version"]  # once, by the first
    assert second == first and first["clang"].startswith(("clang", "Debian clang", "Ubuntu"))
    assert identity_cached(str(clang), work) == first


def test_a_changed_clang_is_asked_again(tmp_path, counted_clang):
    clang, log = counted_clang
    work = tmp_path / "work"
    Toolchain(clang=str(clang), work_dir=work, sandbox=False).identity()

    clang.write_text(clang.read_text() + "# upgraded\n")  # another size and mtime

    assert identity_cached(str(clang), work) is None
    Toolchain(clang=str(clang), work_dir=work, sandbox=False).identity()
    assert runs(log) == ["--version", "--version"]
    assert identity_cached(str(clang), work) is not None  # saved for the new one


def test_a_changed_libbpf_header_is_a_new_identity(tmp_path, counted_clang):
    clang, _ = counted_clang
    libbpf = tmp_path / "include"
    shutil.copytree("/usr/include/bpf", libbpf / "bpf")
    work = tmp_path / "work"
    before = Toolchain(clang=str(clang), work_dir=work, sandbox=False,
                       libbpf_include=libbpf).identity()

    with open(libbpf / "bpf" / "bpf_helpers.h", "a") as f:
        f.write("/* patched */\n")

    assert identity_cached(str(clang), work, libbpf_include=libbpf) is None
    after = Toolchain(clang=str(clang), work_dir=work, sandbox=False,
                      libbpf_include=libbpf).identity()
    assert after["libbpf_h"] != before["libbpf_h"]
    assert identity_cached(str(clang), work, libbpf_include=libbpf) == after


@pytest.mark.parametrize("damage", ["not json", '{"fingerprint": 1}', '[]'])
def test_a_damaged_identity_file_is_a_miss_and_is_rewritten(tmp_path, counted_clang, damage):
    clang, log = counted_clang
    work = tmp_path / "work"
    work.mkdir()
    (work / FILE).write_text(damage)

    assert identity_cached(str(clang), work) is None
    got = Toolchain(clang=str(clang), work_dir=work, sandbox=False).identity()

    assert runs(log) == ["--version"]
    assert json.loads((work / FILE).read_text())["identity"] == got


def test_an_unwritable_work_dir_still_answers(tmp_path, counted_clang):
    clang, _ = counted_clang
    work = tmp_path / "not-a-dir"
    work.write_text("")  # no directory can be made here

    got = Toolchain(clang=str(clang), work_dir=work, sandbox=False).identity()

    assert got["clang"] and identity_cached(str(clang), work) is None


def test_no_clang_is_no_cached_identity(tmp_path):
    assert identity_cached("no-such-clang-lcc", tmp_path) is None
