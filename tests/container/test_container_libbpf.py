"""Programs written for libbpf, compiled by the service in the image: the
image must hold the UAPI headers (multiarch asm/) and give vmlinux.h the
kernel's kfunc declarations, as the toolchain does on a host.

Uses the image and service fixtures of test_container.py (marker ``docker``).
"""

from __future__ import annotations

import base64

import pytest

from test_container import _compile, engine, image, service  # noqa: F401 - fixtures

pytestmark = pytest.mark.docker

# libbpf-bootstrap's minimal.bpf.c: <linux/bpf.h> -> <linux/types.h> -> <asm/types.h>.
MINIMAL = """\
// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int my_pid = 0;

SEC("tp/syscalls/sys_enter_write")
int handle_tp(void *ctx)
{
\tif ((bpf_get_current_pid_tgid() >> 32) != my_pid)
\t\treturn 0;
\tbpf_printk("BPF triggered from PID %d.\\n", my_pid);
\treturn 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""

# A kfunc from vmlinux.h and a macro libbpf 1.1 lacks.
KFUNC = """\
// SPDX-License-Identifier: GPL-2.0
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

int seen;

SEC("tp/syscalls/sys_enter_getppid")
int lookup(void *ctx)
{
\tstruct task_struct *t;

\tif (!bpf_ksym_exists(bpf_task_from_pid))
\t\treturn 0;
\tt = bpf_task_from_pid(1);
\tif (t) {
\t\tseen = 1;
\t\tbpf_task_release(t);
\t}
\treturn 0;
}

SEC("uprobe")
int BPF_UPROBE(up, int a) { seen = a; return 0; }

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.mark.parametrize("src", [MINIMAL, KFUNC], ids=["uapi-headers", "kfunc-and-compat"])
def test_libbpf_programs_compile_in_the_image(service, src):
    r = _compile(service, src)
    assert r.status_code == 200, r.text[:2000]
    assert base64.b64decode(r.json()["object"])[:4] == b"\x7fELF"
