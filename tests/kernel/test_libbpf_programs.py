"""Programs written for libbpf, compiled by lcc's toolchain, loaded and run.

tests/progs/uapi_minimal.bpf.c uses UAPI headers instead of vmlinux.h;
tests/progs/libbpf_compat.bpf.c uses what libbpf 1.1's headers lack
(BPF_UPROBE, BPF_KSYSCALL, bpf_for, bpf_core_cast, bpf_ksym_exists, kfuncs).
USDT programs are written per test: the section names the probe's binary,
which the test builds.  Every trigger is the test's own syscall or a call
the test makes its child process do.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from lcc import AttachPointMissing, BpfError, ClbcBase, NotSupported, features
from lcc.syscalls import syscall_table

from kutil import Target, trigger

pytestmark = pytest.mark.bpf

NR_GETPPID = syscall_table().number("getppid")

# The child the uprobe and USDT tests trace: reads a number per line, calls
# lcc_add(n, 1000 * n) and hits the USDT probe lcctest:hit(n, -n), prints the sum.
TARGET_C = r"""
#include <stdio.h>
#include <stdlib.h>
#ifdef WITH_SDT
#include <sys/sdt.h>
#endif

__attribute__((noinline)) long lcc_add(int a, long b)
{
	asm volatile("" ::: "memory");
	return a + b;
}

int main(void)
{
	char line[64];

	while (fgets(line, sizeof(line), stdin)) {
		int n = atoi(line);
#ifdef WITH_SDT
		DTRACE_PROBE2(lcctest, hit, n, -(long)n);
#endif
		printf("%ld\n", lcc_add(n, 1000L * n));
		fflush(stdout);
	}
	return 0;
}
"""


def _has_sdt_h() -> bool:
    done = subprocess.run(["cc", "-E", "-x", "c", "-"], input="#include <sys/sdt.h>\n",
                          capture_output=True, text=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def target_binary(tmp_path_factory):
    """The child program, with its USDT probe when <sys/sdt.h> is installed."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the traced program")
    d = tmp_path_factory.mktemp("libbpf-target")
    (d / "target.c").write_text(TARGET_C)
    sdt = ["-DWITH_SDT"] if _has_sdt_h() else []
    subprocess.run(["cc", "-O1", *sdt, "-o", str(d / "target"), str(d / "target.c")],
                   check=True)
    return (d / "target", bool(sdt))


@pytest.fixture
def target(target_binary):
    t = Target(target_binary[0])
    yield t
    t.close()


def _compat(load, programs, **kw):
    return load("libbpf_compat.bpf.c", programs=programs,
                rodata={"target_pid": os.getpid(), "nr_getppid": NR_GETPPID}, **kw)


def test_uapi_headers_program_loads_and_counts(load):
    tool = load("uapi_minimal.bpf.c")
    tool.bss.my_pid = os.getpid()  # a plain global, as minimal.bpf.c has it
    trigger()
    trigger()
    assert tool.bss.hits == 2


def test_bpf_uprobe_and_uretprobe_give_typed_arguments(load, target_binary, target):
    tool = _compat(load, ["add_entry", "add_return"], attach=False)
    path = str(target_binary[0])
    tool.attach_uprobe("add_entry", path, "lcc_add", pid=target.proc.pid)
    tool.attach_uretprobe("add_return", path, "lcc_add", pid=target.proc.pid)

    assert target.call(7) == 7007

    assert (tool.bss.up_hits, tool.bss.up_a, tool.bss.up_b) == (1, 7, 7000)
    assert (tool.bss.uret_hits, tool.bss.uret_val) == (1, 7007)


def test_open_coded_loops_and_core_cast(load):
    tool = _compat(load, ["loops"])
    trigger()
    assert tool.bss.loop_sum == 0 + 1 + 2 + 3 + 4 + 300
    assert tool.bss.cast_pid == os.getpid()


def test_kfunc_declared_by_vmlinux_h_is_called(load):
    tool = _compat(load, ["kfunc_lookup"])
    trigger()
    assert tool.bss.kfunc_missing == 0
    assert tool.bss.kfunc_pid == os.getpid()
    with open("/proc/self/comm") as f:
        assert tool.bss.kfunc_comm == f.read().strip()[:15]


def test_bpf_ksyscall_compiles_and_needs_kprobes(load):
    if features.has_kprobes():
        tool = _compat(load, ["kill_entry"])
        os.kill(os.getpid(), 0)
        assert tool.bss.sig_seen == 0
        return
    with pytest.raises(NotSupported) as ei:
        _compat(load, ["kill_entry"])
    msg = str(ei.value)
    assert ei.value.feature == "kprobe" and "no kprobes" in msg and "\n" not in msg


USDT_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

__u64 hits;
long arg_n, arg_neg;

SEC("usdt/BINARY:lcctest:hit")
int BPF_USDT(on_hit, int n, long neg)
{
\t__sync_fetch_and_add(&hits, 1);
\targ_n = n;
\targ_neg = neg;
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_usdt_probe_attaches_by_section_name(compile_prog, target_binary, target):
    path, has_sdt = target_binary
    if not has_sdt:
        pytest.skip("<sys/sdt.h> is missing (scripts/setup.sh installs systemtap-sdt-dev)")
    obj = compile_prog(USDT_C.replace("BINARY", str(path)))
    with ClbcBase("usdt", obj=obj) as tool:
        assert [lk.program.name for lk in tool.links] == ["on_hit"]
        assert target.call(5) == 5005
        assert target.call(6) == 6006
        assert (tool.bss.hits, tool.bss.arg_n, tool.bss.arg_neg) == (2, 6, -6)


@pytest.mark.parametrize("dist", [False, True], ids=["counts", "histograms"])
def test_softirqs_style_indexing_passes_the_verifier(load, dist):
    # Loads only: the verifier's verdict on the compiler's bounds is the point.
    tool = load("softirqs_style.bpf.c", rodata={"targ_dist": dist}, attach=False)
    assert set(tool.obj.programs) == {"softirq_entry", "softirq_exit"}


def test_usdt_program_through_lcc_run(tmp_path, lcc_cache, target_binary, target):
    """The same libbpf USDT program run as a user would: `lcc run prog.bpf.c`, its
    globals printed decoded when it stops."""
    import signal
    import sys
    import threading
    path, has_sdt = target_binary
    if not has_sdt:
        pytest.skip("<sys/sdt.h> is missing (scripts/setup.sh installs systemtap-sdt-dev)")
    src = tmp_path / "usdt.bpf.c"
    src.write_text(USDT_C.replace("BINARY", str(path)))
    proc = subprocess.Popen([sys.executable, "-m", "lcc.cli", "run", str(src)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(iter(proc.stderr.readline, "")),
                              daemon=True)
    reader.start()
    try:
        from kutil import wait_for
        wait_for(lambda: any("Hit Ctrl-C" in ln for ln in err) or proc.poll() is not None,
                 "lcc run attached", timeout=120)
        assert proc.poll() is None, "".join(err)
        assert target.call(7) == 7007
        assert target.call(8) == 8008
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(err)
    assert "Attached 1 of 1 programs (on_hit)" in "".join(err)
    values = dict(ln.split(": ", 1) for ln in out.splitlines() if ": " in ln)
    assert (values.get("hits"), values.get("arg_n"), values.get("arg_neg")) == ("2", "8", "-8"), out
    assert "__bpf_usdt" not in out  # libbpf's own bookkeeping maps are not the tool's


BARE_USDT_C = USDT_C.replace('SEC("usdt/BINARY:lcctest:hit")', 'SEC("usdt")')


def test_bare_usdt_program_attached_from_python(compile_prog, target_binary, target):
    """SEC("usdt") names no probe: the caller attaches it, as a C loader would."""
    path, has_sdt = target_binary
    if not has_sdt:
        pytest.skip("<sys/sdt.h> is missing (scripts/setup.sh installs systemtap-sdt-dev)")
    with ClbcBase("usdt", obj=compile_prog(BARE_USDT_C)) as tool:
        assert tool.links == []  # nothing to attach by name
        tool.attach_usdt("on_hit", str(path), "lcctest", "hit")
        assert target.call(3) == 3003
        assert (tool.bss.hits, tool.bss.arg_n, tool.bss.arg_neg) == (1, 3, -3)
        with pytest.raises(AttachPointMissing, match="has no USDT probe lcctest:nope"):
            tool.attach_usdt("on_hit", str(path), "lcctest", "nope")


STACKS_C = """\
// SPDX-License-Identifier: GPL-2.0
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;
__s64 stack_id = -1;

/* as libbpf-tools' profile.bpf.c: the loader chooses the depth */
struct {
\t__uint(type, BPF_MAP_TYPE_STACK_TRACE);
\t__uint(key_size, sizeof(__u32));
} stacks SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
\tif ((bpf_get_current_pid_tgid() >> 32) != target_pid)
\t\treturn 0;
\tstack_id = bpf_get_stackid(ctx, &stacks, 0);
\treturn 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_stack_map_left_without_a_value_size(compile_prog):
    obj = compile_prog(STACKS_C)
    with pytest.raises(BpfError, match="value_size 0"):
        ClbcBase("stacks", obj=obj, rodata={"target_pid": os.getpid()})
    tool = ClbcBase("stacks", obj=obj, rodata={"target_pid": os.getpid()}, load=False)
    try:
        assert tool.spec.default_map_sizes() == {"stacks": 1024}
        assert tool.spec.default_value_sizes() == {"stacks": 127 * 8}
        tool.load()
        tool.attach_all()
        trigger()
        sid = tool.data.stack_id
        assert sid >= 0
        frames = tool.maps["stacks"].frames(sid)
        assert any(f.startswith("do_syscall_64") for f in frames), frames
    finally:
        tool.close()
