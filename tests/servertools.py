"""What the compile-service and toolchain tests share: the toolchain check and
the small program they compile.

Imported by name (``from servertools import HELLO``): ``tests/`` is on
``sys.path`` because ``tests/conftest.py`` lives there.
"""

from __future__ import annotations

import os
import shutil

#: A small lbc.h program: one tracepoint program, one hash map.
HELLO = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

LBC_HASH(counts, u32, u64, 1024);

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
\tu32 pid = bpf_get_current_pid_tgid() >> 32;

\tlbc_count(&counts, &pid);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def toolchain_missing() -> str | None:
    """Why the compile toolchain cannot run here (clang, bpftool, kernel BTF), or None."""
    if shutil.which("clang") is None:
        return "clang is not installed"
    if shutil.which("bpftool") is None and shutil.which("bpftool", path="/usr/sbin:/sbin") is None:
        return "bpftool is not installed"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "this kernel has no BTF (/sys/kernel/btf/vmlinux)"
    return None
