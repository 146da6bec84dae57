"""lcc.syscalls: syscall names and numbers without a kernel."""

from __future__ import annotations

import pytest
from lcc.syscalls import SyscallTable, UnknownSyscall, syscall_table


def test_x86_64_numbers_are_the_abi():
    t = syscall_table("x86_64")
    assert t.number("read") == 0 and t.number("write") == 1
    assert t.number("getppid") == 110 and t.number("clock_nanosleep") == 230
    assert t.number("exit_group") == 231 and t.number("openat2") == 437
    assert t.name(0) == "read" and t.name(257) == "openat"


def test_generic_table_for_arm64():
    t = syscall_table("aarch64")
    assert t.number("openat") == 56 and t.number("read") == 63
    assert t.number("getppid") == 173 and t.number("newfstatat") == 79
    assert t.number("mmap") == 222 and t.number("lseek") == 62
    assert "open" not in t  # arm64 has only openat


def test_numbers_from_424_are_shared():
    for arch in ("x86_64", "aarch64"):
        t = syscall_table(arch)
        assert t.number("pidfd_open") == 434
        assert t.number("cachestat") == 451 and t.number("mseal") == 462


def test_sys_prefix_and_unknown_names():
    t = syscall_table("x86_64")
    assert t.number("sys_read") == 0
    with pytest.raises(UnknownSyscall, match="did you mean read"):
        t.number("raed")
    with pytest.raises(KeyError):  # UnknownSyscall is also a KeyError
        t.number("no_such_call_at_all")
    assert t.name(100000) == "syscall_100000"
    assert t.numbers(["read", "write"]) == [0, 1]


def test_unknown_architecture_without_headers():
    from lcc.errors import LccError
    with pytest.raises(LccError, match="no syscall table"):
        syscall_table("vax")


def test_table_is_a_mapping():
    t = SyscallTable("test", {"a": 1, "b": 2, "b_alias": 2})
    assert dict(t) == {"a": 1, "b": 2, "b_alias": 2}
    assert t.name(2) == "b" and t.max_number == 2 and len(t) == 3
