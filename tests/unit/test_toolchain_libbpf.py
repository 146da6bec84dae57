"""Programs written for libbpf, as they are, through the toolchain (marker
``toolchain``): UAPI headers instead of vmlinux.h, the macros of libbpf
releases newer than the installed headers, kfunc declarations, USDT.

Loading and attaching them is in tests/kernel/test_libbpf_programs.py.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lcc_toolchain import objinfo
from lcc_toolchain.errors import CompileFailed
from lcc_toolchain.headers import multiarch_dir
from lcc_toolchain.toolchain import Toolchain

pytestmark = pytest.mark.toolchain


@dataclass
class B:
    main: str
    files: dict = field(default_factory=dict)


def one(text: str, name: str = "p.bpf.c") -> B:
    return B(name, {name: text})


@pytest.fixture(scope="module")
def tc(tmp_path_factory):
    return Toolchain(work_dir=tmp_path_factory.mktemp("toolchain"))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    return Toolchain(work_dir=tmp_path_factory.mktemp("whole"), cut=False, pch=False)


needs_multiarch = pytest.mark.skipif(
    multiarch_dir("x86_64") is None and not Path("/usr/include/asm").is_dir(),
    reason="no UAPI asm/ headers (linux-libc-dev) on this host")

# libbpf-bootstrap's minimal.bpf.c: UAPI headers, no vmlinux.h.
MINIMAL = """\
// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

int my_pid = 0;

SEC("tp/syscalls/sys_enter_write")
int handle_tp(void *ctx)
{
\tint pid = bpf_get_current_pid_tgid() >> 32;

\tif (pid != my_pid)
\t\treturn 0;
\tbpf_printk("BPF triggered from PID %d.\\n", pid);
\treturn 0;
}
"""

# libbpf-bootstrap's sockfilter.bpf.c, shortened: network UAPI headers and <stddef.h>.
SOCKFILTER = """\
// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <stddef.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
\t__uint(type, BPF_MAP_TYPE_RINGBUF);
\t__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

SEC("socket")
int socket_handler(struct __sk_buff *skb)
{
\t__u16 proto;
\t__u8 *e;

\tbpf_skb_load_bytes(skb, 12, &proto, 2);
\tif (__bpf_ntohs(proto) != ETH_P_IP)
\t\treturn 0;
\te = bpf_ringbuf_reserve(&rb, 1, 0);
\tif (!e)
\t\treturn 0;
\tbpf_skb_load_bytes(skb, ETH_HLEN + offsetof(struct iphdr, protocol), e, 1);
\tbpf_ringbuf_submit(e, 0);
\treturn skb->len;
}
"""

# libbpf-bootstrap's usdt.bpf.c: usdt.bpf.h includes <linux/errno.h>.
USDT = """\
// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <vmlinux.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

pid_t my_pid;

SEC("usdt/libc.so.6:libc:setjmp")
int BPF_USDT(usdt_auto_attach, void *arg1, int arg2, void *arg3)
{
\tif ((bpf_get_current_pid_tgid() >> 32) != my_pid)
\t\treturn 0;
\tbpf_printk("setjmp: %lx %d %lx", arg1, arg2, arg3);
\treturn 0;
}

SEC("usdt")
int BPF_USDT(usdt_manual_attach, void *arg1, int arg2, void *arg3)
{
\treturn 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
"""


@needs_multiarch
@pytest.mark.parametrize("text", [MINIMAL, SOCKFILTER, USDT], ids=["minimal", "sockfilter", "usdt"])
def test_libbpf_bootstrap_programs_compile_as_they_are(tc, text):
    got = tc.compile(one(text))

    assert got.object.startswith(b"\x7fELF")
    assert objinfo.summarize(got.object)["programs"]


@needs_multiarch
def test_vmlinux_h_and_uapi_headers_together_give_clangs_redefinition_errors(tc):
    text = '#include "vmlinux.h"\n#include <linux/bpf.h>\nint x;\n'
    with pytest.raises(CompileFailed) as err:
        tc.compile(one(text))

    assert any("redefinition" in d.message for d in err.value.diagnostics)
    assert "include either vmlinux.h or the UAPI headers" in err.value.hint


# The macros of libbpf 1.2-1.4 that libbpf 1.1 lacks, in a program that
# includes libbpf's headers itself, in an order lbc.h does not use.
NEWER_MACROS = """\
// SPDX-License-Identifier: GPL-2.0
#include "vmlinux.h"
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>

struct holder { struct task_struct __kptr_untrusted *t; };
int sum, pid;

SEC("uprobe")
int BPF_UPROBE(up, int a, long b) { sum = a + b; return 0; }

SEC("uretprobe")
int BPF_URETPROBE(uret, int ret) { sum = ret; return 0; }

SEC("ksyscall/kill")
int BPF_KSYSCALL(on_kill, pid_t target, int sig) { sum = sig; return 0; }

SEC("tp_btf/sys_enter")
int BPF_PROG(loops, struct pt_regs *regs, long id)
{
\tstruct task_struct *t;
\tint i;

\tbpf_for(i, 0, 4) sum += i;
\tbpf_repeat(2) sum++;
\tt = bpf_core_cast((void *)bpf_get_current_task(), struct task_struct);
\tpid = t->pid;
\treturn 0;
}

__noinline int global_fn(void *ctx __arg_ctx, int *p __arg_nonnull) { return *p; }

SEC("tp/syscalls/sys_enter_getppid")
int kfunc(void *ctx)
{
\tstruct task_struct *t;

\tif (!bpf_ksym_exists(bpf_task_from_pid))
\t\treturn 0;
\tt = bpf_task_from_pid(1);
\tif (t)
\t\tbpf_task_release(t);
\treturn global_fn(ctx, &sum);
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_macros_of_newer_libbpf_releases_compile(tc):
    got = tc.compile(one(NEWER_MACROS))

    progs = {p["name"]: p["section"] for p in objinfo.summarize(got.object)["programs"]}
    assert progs["up"] == "uprobe" and progs["on_kill"] == "ksyscall/kill"


LBC_KFUNC = """\
// SPDX-License-Identifier: GPL-2.0
#include "lbc.h"

u32 seen;

SEC("tp/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
\tstruct task_struct *t = bpf_task_from_pid(1);

\tif (!t)
\t\treturn 0;
\tseen = BPF_CORE_READ(t, pid);
\tbpf_task_release(t);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_kfunc_through_lbc_h_uses_the_cut_and_matches_the_whole_header(tc, whole):
    cut, full = tc.compile(one(LBC_KFUNC)), whole.compile(one(LBC_KFUNC))

    assert cut.cut is True and cut.pch is True
    assert objinfo.summarize(cut.object) == objinfo.summarize(full.object)


def test_program_declaring_kfuncs_its_own_way_opts_out(tc):
    # vmlinux.h's block is left out, as with a newer bpftool's vmlinux.h
    own = LBC_KFUNC.replace(
        "u32 seen;", "u32 seen;\nextern struct task_struct *bpf_task_from_pid(int pid) __ksym;\n"
        "extern void bpf_task_release(void *p) __ksym;")
    with pytest.raises(CompileFailed, match="conflicting types for 'bpf_task_release'"):
        tc.compile(one(own))
    assert tc.compile(one("#define BPF_NO_KFUNC_PROTOTYPES\n" + own)).object


def test_identity_covers_the_compat_headers(tc):
    from lcc_toolchain.headers import header_files, include_dir

    names = {p.relative_to(include_dir()).as_posix() for p in header_files()}
    assert {"lbc.h", "bpf/bpf_helpers.h", "bpf/bpf_tracing.h", "bpf/bpf_core_read.h"} <= names
    assert tc.identity()["flags"] == "3"


INSTALLED_CLANGS = ["clang", *(f"clang-{v}" for v in range(15, 23) if shutil.which(f"clang-{v}"))]


@needs_multiarch
@pytest.mark.parametrize("clang", INSTALLED_CLANGS)
def test_every_installed_clang_compiles_them(tmp_path, clang):
    # LCC_CLANG may choose any of them: the compat headers and kfunc
    # declarations must suit each.
    tc = Toolchain(clang=clang, work_dir=tmp_path)
    for text in (MINIMAL, SOCKFILTER, USDT, NEWER_MACROS, LBC_KFUNC):
        assert tc.compile(one(text)).object.startswith(b"\x7fELF")


def test_own_redefinition_of_a_kernel_type_gets_no_uapi_hint(tc):
    with pytest.raises(CompileFailed) as err:
        tc.compile(one('#include "vmlinux.h"\nstruct task_struct { int x; };\n'))
    assert any("redefinition" in d.message for d in err.value.diagnostics)
    assert err.value.hint is None
