"""pyLCC scripts run on lcc unchanged.

pylcc_eventout.py is pyLCC's eventOut sample as its users have it, down to
its import line (`from pylcc.lbcBase import ClbcBase`: lcc's compatibility
package, client/pylcc).  The guide-style scripts run as programs are in
test_pylcc_scripts.py.
"""

from __future__ import annotations

import ctypes as ct
import os
import subprocess

import pytest

from lcc import NotSupported, features

import pylcc_eventout

pytestmark = pytest.mark.bpf


def test_eventout_sample_compiles_loads_and_says_kprobes_are_off():
    if features.has_kprobes():
        pytest.skip("this kernel has kprobes: the sample attaches")
    with pytest.raises(NotSupported) as ei:
        pylcc_eventout.CeventOut()
    e = ei.value
    assert e.feature == "kprobe"
    assert "j_wake_up_new_task" in str(e) and "no kprobes" in str(e)


# The sample's job on a tracepoint: the same event, the same script shape.
FORK_PROG = r"""
#include "lbc.h"

#define TASK_COMM_LEN 16
struct data_t {
    u32 c_pid;
    u32 p_pid;
    char c_comm[TASK_COMM_LEN];
    char p_comm[TASK_COMM_LEN];
};

const volatile u32 target_pid = 0;

LBC_PERF_OUTPUT(e_out, struct data_t, 128);
SEC("tp_btf/sched_process_fork")
int BPF_PROG(j_fork, struct task_struct *parent, struct task_struct *child)
{
    struct data_t data = {};

    data.p_pid = BPF_CORE_READ(parent, tgid);
    if (target_pid && data.p_pid != target_pid)
        return 0;
    data.c_pid = BPF_CORE_READ(child, pid);
    bpf_get_current_comm(&data.p_comm, TASK_COMM_LEN);
    bpf_core_read(&data.c_comm[0], TASK_COMM_LEN, &child->comm[0]);

    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class Done(Exception):
    """Raised by the callback to end the sample's endless perf_buffer_poll()."""


class CforkOut(pylcc_eventout.CeventOut):
    def __init__(self):
        pylcc_eventout.ClbcBase.__init__(self, "forkOut", bpf_str=FORK_PROG,
                                         rodata={"target_pid": os.getpid()})
        self.events = []

    def _cb(self, cpu, data, size):
        stream = ct.string_at(data, size)
        e = self.maps['e_out'].event(stream)
        self.events.append(e)
        raise Done


def test_tracepoint_variant_delivers_events():
    tool = CforkOut()
    try:
        tool.maps['e_out'].open_perf_buffer(tool._cb)
        child = subprocess.Popen(["true"])
        child.wait()
        with pytest.raises(Done):  # the callback's exception ends the endless poll
            tool.maps['e_out'].perf_buffer_poll()
        (e,) = tool.events
        assert (e.p_pid, e.c_pid) == (os.getpid(), child.pid)
        with open("/proc/self/comm") as f:
            comm = f.read().strip()
        assert e.p_comm == comm
        assert e.c_comm == comm  # the child has not exec'd yet when it forks
        assert tool.maps['e_out'].event(e) is e  # event() on a decoded event is a no-op
        assert tool.getMap('e_out', ct.string_at(e, 40), 40) == e  # pyLCC's getMap
    finally:
        tool.close()


# pyLCC's _() reads kernel structs and the program's own structs alike.
ACCESSOR_PROG = r"""
#include "lbc.h"

struct local_t {
    u32 a;
    u64 b;
};

LBC_ARRAY(vals, u32, struct local_t, 1);

const volatile u32 target_pid = 0;
u32 tgid_read = 0;      /* _(task->tgid): a kernel struct */
u64 stack_b = 0;        /* _(mine.b): a struct on the BPF stack */
u64 map_b = 0;          /* _(v->b): a struct in a map value */

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct local_t mine = { .a = 1, .b = 0x1234 };
    struct local_t *v;
    u32 zero = 0;

    if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
        return 0;
    tgid_read = _(task->tgid);
    stack_b = _(mine.b);
    v = bpf_map_lookup_elem(&vals, &zero);
    if (v)
        map_b = _(v->b);
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


def test_accessor_reads_kernel_and_local_structs(compile_prog):
    tool = pylcc_eventout.ClbcBase("accessor", obj=compile_prog(ACCESSOR_PROG),
                                   rodata={"target_pid": os.getpid()})
    try:
        tool.maps["vals"][0] = {"a": 2, "b": 0xBEEF}
        os.getppid()
        assert tool.bss.tgid_read == os.getpid()
        assert tool.bss.stack_b == 0x1234
        assert tool.bss.map_b == 0xBEEF
    finally:
        tool.close()
