"""The libbpf binding: loading, return-code mapping, messages. No privileges needed."""

from __future__ import annotations

import ctypes as ct
import ctypes.util
import errno

import pytest

from lcc import _libbpf
from lcc.errors import (BpfError, BpfPermissionError, BtfError, NotSupported,
                        ProgramLoadError)
from lcc.object import load_error


def test_check_passes_non_negative_values_through():
    assert _libbpf.check(0, "x") == 0
    assert _libbpf.check(7, "x") == 7


@pytest.mark.parametrize("ret, cls", [(-errno.EPERM, BpfPermissionError),
                                      (-errno.ENOENT, BpfError),
                                      (-errno.EOPNOTSUPP, NotSupported),
                                      (-524, NotSupported)])
def test_check_maps_negative_errno(ret, cls):
    with pytest.raises(cls) as ei:
        _libbpf.check(ret, "attaching a thing", hint="try this")
    assert ei.value.errno == -ret and ei.value.hint == "try this"
    assert "attaching a thing" in str(ei.value)


def test_check_ptr_reads_errno():
    assert _libbpf.check_ptr(0x1000, "x") == 0x1000
    ct.set_errno(errno.EACCES)
    with pytest.raises(BpfPermissionError):
        _libbpf.check_ptr(None, "opening")
    ct.set_errno(0)
    with pytest.raises(BpfError) as ei:  # NULL without errno: EINVAL, never "success"
        _libbpf.check_ptr(0, "opening")
    assert ei.value.errno == errno.EINVAL


def test_library_loads_with_prototypes():
    lb = _libbpf.lib()
    assert _libbpf.lib() is lb  # once
    assert _libbpf.version() >= (1, 1)
    assert _libbpf.has("bpf_object__open_mem") and _libbpf.has("ring_buffer__new")
    assert lb.bpf_object__open_mem.restype is ct.c_void_p


def test_missing_library_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(_libbpf, "_lib", None)
    monkeypatch.setenv("LCC_LIBBPF", "/nonexistent/libbpf.so.1")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(NotSupported) as ei:
        _libbpf.lib()
    assert ei.value.feature == "libbpf"
    assert "libbpf1" in ei.value.hint and "LCC_LIBBPF" in ei.value.hint


def test_open_garbage_is_an_error_with_libbpf_words():
    _libbpf.clear_messages()
    with pytest.raises(BpfError) as ei:
        _libbpf.open_object(b"\x7fELF not really", name="junk", btf_custom_path=None,
                            log_buf=None)
    assert "opening the BPF object" in str(ei.value)
    assert "Unknown error" not in str(ei.value)
    assert any("libbpf" in m for m in _libbpf.recent_messages())


def test_libbpf_is_heard_while_opening_only_when_someone_listens(monkeypatch):
    """An object's open runs with libbpf quiet unless verbose mode or a logger
    passing warnings would show what it says (a failed open is retried to
    get its words, see the test above)."""
    import logging
    log = logging.getLogger("lcc.libbpf")
    monkeypatch.setattr(_libbpf, "_verbose", False)
    monkeypatch.setattr(log, "level", log.level)
    log.setLevel(logging.ERROR)  # lcc's default
    assert not _libbpf._messages_wanted()
    log.setLevel(logging.WARNING)
    assert _libbpf._messages_wanted()
    log.setLevel(logging.ERROR)
    monkeypatch.setattr(_libbpf, "_verbose", True)
    assert _libbpf._messages_wanted()


def test_functions_are_declared_once_and_missing_ones_say_so():
    lb = _libbpf.lib()
    assert lb.bpf_map__name is lb.bpf_map__name
    assert lb.bpf_map__max_entries.restype is ct.c_uint32
    assert list(lb.bpf_map__fd.argtypes) == [ct.c_void_p]
    with pytest.raises(AttributeError, match="no function bpf_nonexistent"):
        lb.bpf_nonexistent
    assert not _libbpf.has("bpf_nonexistent")


def test_num_possible_cpus():
    n = _libbpf.num_possible_cpus()
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    last = max(int(part.split("-")[-1]) for part in text.split(","))
    assert n == last + 1


# -- load_error: libbpf's words after a failed bpf_object__load ------------------

def test_load_error_program_rejected():
    msgs = ["libbpf: prog 'p': BPF program load failed: Permission denied",
            "libbpf: prog 'p': failed to load: -13", "libbpf: failed to load object 'o'"]
    e = load_error(errno.EACCES, msgs, "0: R1=ctx()\nR0 invalid mem access 'scalar'\n")
    assert isinstance(e, ProgramLoadError) and e.program == "p"
    assert str(e) == "program 'p' was rejected by the verifier: R0 invalid mem access 'scalar'"


def test_load_error_kernel_without_btf():
    msgs = ["libbpf: failed to find valid kernel BTF", "libbpf: Error loading vmlinux BTF: -3",
            "libbpf: failed to load object 'o'"]
    e = load_error(errno.ESRCH, msgs)
    assert isinstance(e, BtfError)
    assert str(e).startswith("this kernel has no BTF (/sys/kernel/btf/vmlinux), which CO-RE "
                             "programs need to load (")
    assert "btf='server'" in e.hint


def test_load_error_without_privileges():
    msgs = ["libbpf: Error in bpf_object__probe_loading():Operation not permitted(1). "
            "Couldn't load trivial BPF program. Make sure your kernel supports BPF "
            "(CONFIG_BPF_SYSCALL=y) and/or that RLIMIT_MEMLOCK is set to big enough value.",
            "libbpf: failed to load object 'o'"]
    e = load_error(errno.EPERM, msgs)
    assert isinstance(e, BpfPermissionError)
    assert "RLIMIT_MEMLOCK" not in str(e) and "CAP_BPF" in str(e)


def test_load_error_other():
    msgs = ["libbpf: map 'm': failed to create: Invalid argument(-22)",
            "libbpf: failed to load object 'o'"]
    e = load_error(errno.EINVAL, msgs)
    assert type(e) is BpfError
    assert str(e) == ("loading the BPF object failed: map 'm': failed to create: "
                      "Invalid argument(-22)")
