"""A cached object loads with a minimal BTF made for it on this kernel, and from the
quick index on the next start; every way the optimisation can go wrong still loads."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from lcc import ClbcBase, kernelcache
from lcc.compile import minbtf

from kutil import trigger

pytestmark = [pytest.mark.bpf, pytest.mark.toolchain]

# A CO-RE read (task->tgid), a tracepoint and a BTF tracepoint (whose attach
# target libbpf finds in the kernel's own BTF, whatever btf_custom_path says).
SRC = r"""
#include "lbc.h"

const volatile int target_tgid = 0;
__u64 tp_hits = 0, btf_hits = 0;
int seen_tgid = 0;

static __always_inline int mine(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	int tgid = BPF_CORE_READ(t, tgid);
	if (tgid != target_tgid)
		return 0;
	seen_tgid = tgid;
	return 1;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_tp(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&tp_hits, 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(on_btf, struct pt_regs *regs, long id)
{
	if (id == __NR_getppid && mine())
		__sync_fetch_and_add(&btf_hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""

EMPTY_BTF = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"\0"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    if kernelcache.build_id() is None:
        pytest.skip("this kernel has no GNU build-id note")
    monkeypatch.setenv("LCC_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("LCC_MIN_BTF", raising=False)
    return tmp_path


def _tool(tmp: Path, **kw) -> ClbcBase:
    return ClbcBase("minbtf", bpf_str=SRC, workPath=str(tmp), defines={"__NR_getppid": 110},
                    rodata={"target_tgid": os.getpid()}, **kw)


def _works(tool: ClbcBase) -> None:
    before = (tool.bss.tp_hits, tool.bss.btf_hits)
    trigger()
    assert tool.bss.tp_hits > before[0] and tool.bss.btf_hits > before[1]
    assert tool.bss.seen_tgid == os.getpid()


def _min_dir(root: Path) -> Path:
    return root / "artifacts" / "v1" / "minbtf" / kernelcache.build_id()


def test_first_and_quick_start_load_with_a_minimal_btf(cache, tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("the test program names x86-64's getppid number")
    with _tool(tmp_path) as first:
        path = first.spec.btf_custom_path
        assert path is not None and Path(path).parent == _min_dir(cache)
        data = Path(path).read_bytes()
        assert minbtf.is_btf(data)
        assert len(data) < os.path.getsize("/sys/kernel/btf/vmlinux") / 100
        assert first.artifact is not None and first._quick is None
        _works(first)
    with _tool(tmp_path) as second:  # the next start: no compile side, same BTF
        assert second._quick is not None
        assert second.artifact.cache_hit and second.artifact.digest == first.artifact.digest
        assert second.spec.btf_custom_path == path
        _works(second)


def test_a_minimal_btf_libbpf_rejects_is_dropped_and_the_load_succeeds(cache, tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("the test program names x86-64's getppid number")
    with _tool(tmp_path) as t:
        path = Path(t.spec.btf_custom_path)
    path.write_bytes(EMPTY_BTF)  # well-formed, but without the types the object needs
    with _tool(tmp_path) as t:
        assert t.spec.btf_dropped == str(path) and t.spec.btf_custom_path is None
        _works(t)
    assert not path.exists() and path.with_suffix(".none").exists()
    with _tool(tmp_path) as t:  # never tried again for this object on this kernel
        assert t.spec.btf_custom_path is None
        _works(t)


def test_a_damaged_minimal_btf_is_made_again(cache, tmp_path):
    with _tool(tmp_path, attach=False) as t:
        path = Path(t.spec.btf_custom_path)
    path.write_bytes(b"garbage")
    with _tool(tmp_path, attach=False) as t:
        assert t.spec.btf_custom_path == str(path)
        assert minbtf.is_btf(path.read_bytes())


def test_opting_out_loads_with_the_kernels_btf(cache, tmp_path, monkeypatch):
    with _tool(tmp_path, attach=False, min_btf=False) as t:
        assert t.spec.btf_custom_path is None
    monkeypatch.setenv("LCC_MIN_BTF", "0")
    with _tool(tmp_path, attach=False) as t:
        assert t.spec.btf_custom_path is None
