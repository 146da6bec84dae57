"""Explicit attach calls, one per kind, and detaching by close().

tests/progs/attach.bpf.c counts hits in .bss; tests/progs/net.bpf.c counts
UDP packets to one port at cgroup egress and at XDP.
"""

from __future__ import annotations

import ctypes as ct
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from lcc.links import Link, LinkGroup, read_iter
from lcc.symbols import ElfSymbols
from lcc.syscalls import syscall_table

from kutil import Target, trigger

pytestmark = pytest.mark.bpf

NR_GETPPID = syscall_table().number("getppid")
PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK = 1, 0


@pytest.fixture
def tool(load):
    """attach.bpf.c loaded; only tp_btf/sys_enter and the task iterator auto-attach."""
    return load("attach.bpf.c", rodata={"target_pid": os.getpid(), "nr_getppid": NR_GETPPID})


def test_auto_attach_skips_programs_that_need_a_target(tool):
    assert sorted(lk.program.name for lk in tool.links) == ["btf_enter", "dump_task"]
    trigger()
    assert tool.bss.btf_hits == 1  # tp_btf/sys_enter by its section name


def test_tracepoint_and_close_detaches(tool):
    link = tool.attach_tracepoint("tp_explicit", "syscalls", "sys_enter_getppid")
    assert isinstance(link, Link) and link in tool.links and link.fd >= 0
    trigger()
    assert tool.bss.tp_hits == 1
    link.close()
    link.close()  # idempotent
    trigger()
    assert tool.bss.tp_hits == 1


def test_raw_tracepoint(tool):
    with tool.attach_raw_tracepoint("raw_explicit", "sys_enter") as link:
        trigger()
        trigger()
        assert tool.bss.raw_hits == 2
    assert link.closed
    trigger()
    assert tool.bss.raw_hits == 2


def _libc_labs():
    libc = ct.CDLL("libc.so.6")
    libc.labs.argtypes = [ct.c_long]
    libc.labs.restype = ct.c_long
    return libc.labs


def test_uprobe_and_uretprobe_on_libc_called_here(tool):
    labs = _libc_labs()
    up = tool.attach_uprobe("up", "libc.so.6", "labs", pid=os.getpid())
    uret = tool.attach_uretprobe("uret", "libc.so.6", "labs", pid=os.getpid())
    assert labs(-1234) == 1234
    assert (tool.bss.up_hits, tool.bss.up_arg) == (1, (-1234) & (2**64 - 1))
    assert (tool.bss.uret_hits, tool.bss.uret_val) == (1, 1234)
    up.close()
    uret.close()
    labs(-1)
    assert (tool.bss.up_hits, tool.bss.uret_hits) == (1, 1)


TARGET_C = r"""
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) long lcc_target(long x)
{
	asm volatile("");
	return x * 3;
}

int main(void)
{
	char line[64];

	/* one call per line read; the answer tells the test the call is done */
	while (fgets(line, sizeof(line), stdin)) {
		printf("%ld\n", lcc_target(atol(line)));
		fflush(stdout);
	}
	return 0;
}
"""


@pytest.fixture(scope="module")
def target_binary(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    d = tmp_path_factory.mktemp("uprobe")
    (d / "target.c").write_text(TARGET_C)
    subprocess.run(["gcc", "-O1", "-o", str(d / "target"), str(d / "target.c")], check=True)
    return str(d / "target")


@pytest.fixture
def target(target_binary):
    t = Target(target_binary)
    yield t
    t.close()


def test_uprobe_by_symbol_with_pid_filter(tool, target_binary, target):
    other = Target(target_binary)
    try:
        tool.attach_uprobe("up", target_binary, "lcc_target", pid=target.proc.pid)
        tool.attach_uretprobe("uret", target_binary, "lcc_target", pid=target.proc.pid)
        assert other.call(5) == 15  # another process: filtered out by pid
        assert tool.bss.up_hits == 0
        assert target.call(7) == 21
        assert (tool.bss.up_hits, tool.bss.up_arg) == (1, 7)
        assert (tool.bss.uret_hits, tool.bss.uret_val) == (1, 21)
    finally:
        other.close()


def test_uprobe_by_offset_in_every_process(tool, target_binary, target):
    offset = ElfSymbols(target_binary).offset("lcc_target")
    link = tool.attachUprobe("up", -1, target_binary, offset)  # pyLCC's name and argument order
    assert target.call(11) == 33
    assert (tool.bss.up_hits, tool.bss.up_arg) == (1, 11)
    link.close()
    assert target.call(12) == 36
    assert tool.bss.up_hits == 1


def _spin_until(cond, what):
    """Keep this CPU busy until ``cond()``: cpu-clock samples need a running CPU."""
    deadline = time.monotonic() + 10
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        sum(range(10000))


def test_perf_event_sampling_on_every_cpu(tool):
    samples = tool.maps["cpu_samples"]
    group = tool.attach_perf_event("on_sample", event_type=PERF_TYPE_SOFTWARE,
                                   config=PERF_COUNT_SW_CPU_CLOCK, sample_freq=1000)
    assert isinstance(group, LinkGroup)
    with open("/sys/devices/system/cpu/online") as f:
        online = f.read().strip()
    assert len(group.links) == len(_cpu_list(online))
    _spin_until(lambda: sum(samples.values()) >= 5, "perf samples")
    fds = len(os.listdir("/proc/self/fd"))
    group.close()
    assert group.closed
    # Each CPU's link owned its perf event: both fds are gone, none closed twice.
    assert len(os.listdir("/proc/self/fd")) == fds - 2 * len(group.links)
    stopped = sum(samples.values())
    sum(range(2_000_000))  # busy for a while: no new samples arrive
    assert sum(samples.values()) == stopped


def _cpu_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def test_task_iterator(tool):
    link = next(lk for lk in tool.links if lk.program.name == "dump_task")
    first = read_iter(link).decode()
    lines = [ln.split(" ", 2) for ln in first.splitlines()]
    assert lines and all(int(tgid) == os.getpid() for tgid, _pid, _comm in lines)
    assert [str(os.getpid()), str(os.getpid())] in [ln[:2] for ln in lines]  # the main thread
    explicit = tool.attach_iter("dump_task")
    assert read_iter(explicit).decode().splitlines()[0] == first.splitlines()[0]


# -- network attach points --------------------------------------------------------

PORT = 40404


def _send_udp(port: int = PORT) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"lcc", ("127.0.0.1", port))


CGROUP2 = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified/") else "/sys/fs/cgroup"


@pytest.fixture
def cgroup():
    """A fresh cgroup v2 directory, removed afterwards."""
    if not os.path.exists(os.path.join(CGROUP2, "cgroup.procs")):
        pytest.skip("no cgroup v2 hierarchy mounted")
    path = os.path.join(CGROUP2, f"lcc-test-{os.getpid()}")
    os.mkdir(path)
    yield path
    os.rmdir(path)


def _send_from_cgroup(cg: str) -> None:
    """A child process joins ``cg`` and sends one UDP packet to PORT."""
    code = (f"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
            f".sendto(b'lcc', ('127.0.0.1', {PORT}))")
    subprocess.run(["sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec "$2" -S -c "$3"', "sh",
                    cg, sys.executable, code], check=True, timeout=30)


def test_cgroup_skb_egress(load, cgroup):
    tool = load("net.bpf.c", rodata={"port": PORT})
    link = tool.attach_cgroup("egress", cgroup)
    _send_from_cgroup(cgroup)
    assert tool.bss.egress_pkts == 1
    _send_udp()  # this process is not in the cgroup
    assert tool.bss.egress_pkts == 1
    link.close()
    _send_from_cgroup(cgroup)
    assert tool.bss.egress_pkts == 1


CLONE_NEWNET = 0x40000000


@pytest.fixture
def private_netns():
    """This thread in a new network namespace with lo up; the old one restored after."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    libc = ct.CDLL(None, use_errno=True)
    old = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            pytest.skip(f"cannot make a network namespace: {os.strerror(ct.get_errno())}")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            assert libc.setns(old, CLONE_NEWNET) == 0, os.strerror(ct.get_errno())
    finally:
        os.close(old)


def _xdp_attached(dev: str) -> bool:
    out = subprocess.run(["ip", "link", "show", dev], capture_output=True, text=True,
                         check=True).stdout
    return "xdp" in out


def test_xdp_on_loopback_in_a_private_netns(load, private_netns):
    tool = load("net.bpf.c", rodata={"port": PORT})
    link = tool.attach_xdp("xdp_count", "lo")
    assert _xdp_attached("lo")
    _send_udp()
    _send_udp(PORT + 1)  # another port: not counted
    assert tool.bss.xdp_pkts == 1
    link.close()
    assert not _xdp_attached("lo")
    _send_udp()
    assert tool.bss.xdp_pkts == 1


def test_xdp_on_missing_device(load):
    from lcc import AttachPointMissing
    tool = load("net.bpf.c", rodata={"port": PORT})
    with pytest.raises(AttachPointMissing, match="lccnodev0"):
        tool.attach_xdp("xdp_count", "lccnodev0")

