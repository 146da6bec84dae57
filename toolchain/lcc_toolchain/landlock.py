"""Landlock: confine a process to a few directories and no TCP.

``abi_version()`` tells whether the running kernel offers Landlock (0 when
not).  ``restrict(read=..., write=...)`` confines the calling thread and
everything it later executes:

- files and directories under ``read`` paths can be read and executed;
- under ``write`` paths they can also be created, written and removed;
- everything else in the filesystem is denied (``open()`` gets EACCES);
- with ABI >= 4, TCP bind and connect are denied;
- with ABI >= 6, abstract unix sockets and signals outside the domain are denied.

Landlock needs no privilege; it requires ``no_new_privs``, which
``restrict`` sets.  The restriction cannot be lifted.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from lcc_toolchain import _syscalls

__all__ = ["LandlockUnavailable", "abi_version", "restrict"]

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights (include/uapi/linux/landlock.h).
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13       # ABI 2
FS_TRUNCATE = 1 << 14    # ABI 3
FS_IOCTL_DEV = 1 << 15   # ABI 5

NET_BIND_TCP = 1 << 0     # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6

# Rights Landlock can handle, by the ABI that introduced them.
_FS_BY_ABI = {1: (1 << 13) - 1, 2: FS_REFER, 3: FS_TRUNCATE, 5: FS_IOCTL_DEV}
# Rights that make sense on a regular file (others are EINVAL there).
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV

_READ = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
_WRITE = (_READ | FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_DIR | FS_MAKE_REG
          | FS_TRUNCATE)


class LandlockUnavailable(OSError):
    """The kernel does not offer Landlock (not built in, or disabled at boot)."""


def abi_version() -> int:
    """The Landlock ABI version of the running kernel, 0 if Landlock is unavailable."""
    try:
        return _syscalls.landlock_create_ruleset(None, _CREATE_RULESET_VERSION)
    except OSError:
        return 0


def _handled_fs(abi: int) -> int:
    return sum(bits for level, bits in _FS_BY_ABI.items() if level <= abi)


def _add_path(ruleset_fd: int, path: str, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # a missing optional path (e.g. /lib32) needs no rule
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        _syscalls.landlock_add_rule(ruleset_fd, _RULE_PATH_BENEATH,
                                    struct.pack("=Qi", access, fd))
    finally:
        os.close(fd)


def restrict(*, read: list[str], write: list[str] = (), deny_tcp: bool = True) -> int:
    """Confine the calling thread (and what it executes) to ``read``/``write``.

    Returns the ABI version used.  Raises ``LandlockUnavailable`` when the
    kernel has no Landlock, ``OSError`` when a rule cannot be added.
    """
    abi = abi_version()
    if abi < 1:
        raise LandlockUnavailable(errno.EOPNOTSUPP, "Landlock is not available on this kernel")
    handled_fs = _handled_fs(abi)
    handled_net = (NET_BIND_TCP | NET_CONNECT_TCP) if (deny_tcp and abi >= 4) else 0
    scoped = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if abi >= 6 else 0
    # The struct grew with the ABI; pass only the fields this kernel knows.
    if abi >= 6:
        attr = struct.pack("=QQQ", handled_fs, handled_net, scoped)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled_fs, handled_net)
    else:
        attr = struct.pack("=Q", handled_fs)
    ruleset = _syscalls.landlock_create_ruleset(attr)
    try:
        for path in read:
            _add_path(ruleset, path, _READ & handled_fs)
        for path in write:
            _add_path(ruleset, path, _WRITE & handled_fs)
        _syscalls.prctl(_PR_SET_NO_NEW_PRIVS, 1)
        _syscalls.landlock_restrict_self(ruleset)
    finally:
        os.close(ruleset)
    return abi
