"""Per-kernel answers (lcc.kernelcache), kernel enum names and probes remembered by build-id."""

from __future__ import annotations

import os
import struct

import pytest

from lcc import btf, features, kernelcache
from lcc.compile import minbtf
from lcc.errors import BtfError

BID = "ab" * 20


def _note(name: bytes, ntype: int, desc: bytes) -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("=III", len(name), len(desc), ntype) + pad(name) + pad(desc)


@pytest.fixture
def kdir(tmp_path, monkeypatch):
    """A private cache root and a kernel with build-id BID."""
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(kernelcache, "_build_id", BID)
    return tmp_path / "kernel" / BID


def test_build_id_is_the_gnu_note_among_others(tmp_path):
    notes = _note(b"Xen\0", 3, b"\x01\x02") + _note(b"GNU\0", 1, b"abcd") + \
        _note(b"GNU\0", 3, bytes.fromhex("deadbeef"))
    p = tmp_path / "notes"
    p.write_bytes(notes)
    assert kernelcache.build_id(str(p)) == "deadbeef"
    p.write_bytes(notes[:-2])  # cut short
    assert kernelcache.build_id(str(p)) is None


def test_running_kernel_build_id_matches_the_compile_side():
    from lcc.compile.kernel import this_kernel
    bid = kernelcache.build_id()
    me = this_kernel()
    if bid is None:
        pytest.skip("this kernel has no build-id note")
    assert me.btf_id == f"build-id:{bid}"


def test_cache_root_follows_lcc_cache_dir_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path / "a"))
    assert kernelcache.cache_root() == str(tmp_path / "a")
    monkeypatch.delenv("LCC_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert kernelcache.cache_root() == str(tmp_path / "x" / "lcc")


def test_answers_survive_the_process_and_a_damaged_file_is_rewritten(kdir):
    a = kernelcache.Answers("probes")
    a.put("btf 12 btf_trace_x", "42")
    a.put("with\ttab", "line\nbreak")
    b = kernelcache.Answers("probes")  # as a new process sees it
    assert b.get("btf 12 btf_trace_x") == "42"
    assert b.get("with\ttab") == "line break"
    (kdir / "probes").write_bytes(b"\xff\xfe garbage")
    c = kernelcache.Answers("probes")
    assert c.get("btf 12 btf_trace_x") is None
    c.put("k", "v")
    assert kernelcache.Answers("probes").get("k") == "v"


def test_another_kernel_never_reads_these_answers(kdir, monkeypatch):
    kernelcache.Answers("probes").put("k", "v")
    monkeypatch.setattr(kernelcache, "_build_id", "cd" * 20)
    assert kernelcache.Answers("probes").get("k") is None
    monkeypatch.setattr(kernelcache, "_build_id", None)  # no build-id: nothing kept
    assert kernelcache.write("x", b"1") is None and kernelcache.read("x") is None


needs_btf = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                               reason="this kernel has no BTF")


@needs_btf
def test_enum_names_are_read_once_per_kernel(kdir, monkeypatch):
    first = btf.enum_names("bpf_map_type")
    assert first[1] == "BPF_MAP_TYPE_HASH"
    assert (kdir / "enum-bpf_map_type").exists()

    def no_btf():
        raise AssertionError("the kernel's BTF was parsed again")
    monkeypatch.setattr(btf.Btf, "vmlinux", classmethod(lambda cls: no_btf()))
    assert btf.enum_names("bpf_map_type") == first


@needs_btf
def test_a_damaged_enum_file_is_ignored_and_rewritten(kdir):
    good = btf.enum_names("bpf_map_type")
    (kdir / "enum-bpf_map_type").write_bytes(b"1\tBPF_MAP_TYPE_HASH\nnot a line")
    assert btf.enum_names("bpf_map_type") == good
    assert (kdir / "enum-bpf_map_type").read_bytes().endswith(b"\n")
    assert btf._parse_enum_cache((kdir / "enum-bpf_map_type").read_bytes()) == good


@needs_btf
def test_a_missing_enum_is_remembered_as_missing(kdir):
    for _ in range(2):
        with pytest.raises(BtfError, match="not in this BTF"):
            btf.enum_names("no_such_enum_here")
    assert (kdir / "enum-no_such_enum_here").read_bytes() == b"absent\n"


@needs_btf
def test_probe_answers_from_btf_are_kept_per_kernel(kdir, monkeypatch):
    p = features.Probes()  # over this machine: answers are kept
    assert p.raw_tracepoint_exists("sched_switch") is True
    assert p.raw_tracepoint_exists("no_such_tp_anywhere") is False
    q = features.Probes()  # as the next process: the answers come from the file
    monkeypatch.setattr(q.host, "vmlinux_btf", lambda: pytest.fail("BTF parsed again"))
    assert q.raw_tracepoint_exists("sched_switch") is True
    assert q.raw_tracepoint_exists("no_such_tp_anywhere") is False

    class Fake(features.LocalHost):
        pass
    r = features.Probes(Fake())  # a host of its own: nothing read from or written to the cache
    assert r._kept is None


def test_is_btf_checks_the_header_against_the_size():
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1)
    assert minbtf.is_btf(hdr + b"\0")
    assert not minbtf.is_btf(hdr)  # the string section is missing
    assert not minbtf.is_btf(b"\0" * 40)
    assert not minbtf.is_btf(struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 1) + b"\0")


def test_min_btf_of_another_kernel_is_never_used(tmp_path, monkeypatch):
    monkeypatch.setattr(kernelcache, "_build_id", BID)
    digest = "0" * 64
    other = tmp_path / "artifacts" / "v1" / "minbtf" / ("cd" * 20)
    other.mkdir(parents=True)
    (other / f"{digest}.btf").write_bytes(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1)
                                         + b"\0")
    obj = tmp_path / "not-an-object.o"
    obj.write_bytes(b"not ELF")
    # This kernel has none: it is made (bpftool fails on this input) or not at all.
    assert minbtf.for_object(str(tmp_path), digest, str(obj)) is None
    mine = tmp_path / "artifacts" / "v1" / "minbtf" / BID
    assert not (mine / f"{digest}.btf").exists()


def test_min_btf_can_be_turned_off():
    assert minbtf.enabled({})
    assert not minbtf.enabled({"LCC_MIN_BTF": "0"})
    assert not minbtf.enabled({"LCC_MIN_BTF": "off"})


@needs_btf
def test_program_load_answers_are_kept_for_this_boot_only(kdir, monkeypatch):
    first = features.Probes().can_load_tp_btf("sched_switch")  # loads a probe program
    q = features.Probes()
    monkeypatch.setattr(q.host, "load_program", lambda *a, **k: pytest.fail("probed again"))
    assert q.can_load_tp_btf("sched_switch") == first
    monkeypatch.setattr(kernelcache, "boot_id", lambda: "another-boot")
    loads = []
    r = features.Probes()
    monkeypatch.setattr(r.host, "load_program", lambda *a, **k: loads.append(a) or (1, ""))
    assert not r.can_load_tp_btf("sched_switch") and loads  # probed anew after a reboot


@pytest.mark.toolchain
def test_bpftool_saying_no_is_remembered_but_failing_to_run_it_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(kernelcache, "_build_id", BID)
    digest = "1" * 64
    obj = tmp_path / "not-an-object.o"
    obj.write_bytes(b"not ELF")
    mine = tmp_path / "artifacts" / "v1" / "minbtf" / BID

    # A bpftool that cannot be started (exec fails): nothing is recorded, the
    # next start tries again.
    broken = tmp_path / "bpftool-broken"
    broken.write_bytes(b"\x7fELF garbage")
    broken.chmod(0o755)
    assert minbtf.for_object(str(tmp_path), digest, str(obj), bpftool=str(broken)) is None
    assert not (mine / f"{digest}.none").exists()

    # The real bpftool refuses this input: that answer is kept.
    assert minbtf.for_object(str(tmp_path), digest, str(obj)) is None
    assert (mine / f"{digest}.none").exists()
    assert sorted(p.name for p in mine.iterdir()) == [f"{digest}.none"]  # no work files left
