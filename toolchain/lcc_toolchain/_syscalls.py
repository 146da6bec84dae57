"""Raw Linux system calls the sandbox needs, through libc's ``syscall()``.

The only module in ``lcc_toolchain`` that uses ctypes.  Every function returns
the syscall's result or raises ``OSError`` with the errno; nothing here knows
about policies (see ``lcc_toolchain.landlock`` and ``lcc_toolchain.sandbox_exec``).

The libc handle is loaded on first use, never at import time.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "capset_clear",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "mount",
    "prctl",
    "unshare",
]

# Landlock's numbers are shared by every architecture (new syscalls since 424
# use one table), so no per-arch switch is needed.
_NR_LANDLOCK_CREATE_RULESET = 444
_NR_LANDLOCK_ADD_RULE = 445
_NR_LANDLOCK_RESTRICT_SELF = 446

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.prctl.restype = ctypes.c_int
        lib.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                              ctypes.c_ulong, ctypes.c_ulong]
        lib.unshare.restype = ctypes.c_int
        lib.unshare.argtypes = [ctypes.c_int]
        lib.mount.restype = ctypes.c_int
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                              ctypes.c_ulong, ctypes.c_char_p]
        _libc = lib
    return _libc


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def landlock_create_ruleset(attr: bytes | None, flags: int = 0) -> int:
    """landlock_create_ruleset(2); ``attr`` is the packed struct (or None with
    the VERSION flag).  Returns a ruleset fd, or the ABI version."""
    buf = ctypes.create_string_buffer(attr, len(attr)) if attr else None
    size = len(attr) if attr else 0
    ret = _lib().syscall(ctypes.c_long(_NR_LANDLOCK_CREATE_RULESET), buf,
                         ctypes.c_size_t(size), ctypes.c_uint32(flags))
    return _check(ret, "landlock_create_ruleset")


def landlock_add_rule(ruleset_fd: int, rule_type: int, attr: bytes) -> None:
    """landlock_add_rule(2) with a packed rule attribute."""
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _lib().syscall(ctypes.c_long(_NR_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset_fd),
                         ctypes.c_int(rule_type), buf, ctypes.c_uint32(0))
    _check(ret, "landlock_add_rule")


def landlock_restrict_self(ruleset_fd: int) -> None:
    """landlock_restrict_self(2): confine this thread and its future children."""
    ret = _lib().syscall(ctypes.c_long(_NR_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset_fd),
                         ctypes.c_uint32(0))
    _check(ret, "landlock_restrict_self")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    return _check(_lib().prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2)."""
    def enc(v):
        return None if v is None else os.fsencode(v)
    _check(_lib().mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
           f"mount {target}")


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_lib().unshare(flags), "unshare")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capset_clear() -> None:
    """capset(2) with empty effective, permitted and inheritable sets."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    lib = _lib()
    lib.capset.restype = ctypes.c_int
    _check(lib.capset(ctypes.byref(hdr), data), "capset")
