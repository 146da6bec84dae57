# -*- coding: utf-8 -*-
"""eventOut, in pyLCC's style: fork events of one process through CeventThread.

The pyLCC guide hooks kprobe/wake_up_new_task; this kernel has no kprobes,
so the same event comes from the sched_process_fork tracepoint (tp_btf).
The parent to watch is a compile-time define, passed the pyLCC way (env=).

usage: event_out.py PID    (stops on SIGINT/SIGTERM and prints the count)
"""

import sys

from pylcc.lbcBase import ClbcBase, CeventThread

bpfPog = r"""
#include "lbc.h"
#define TASK_COMM_LEN 16
struct data_t {
    u32 c_pid;
    u32 p_pid;
    char c_comm[TASK_COMM_LEN];
    char p_comm[TASK_COMM_LEN];
};

LBC_PERF_OUTPUT(e_out, struct data_t, 128);
SEC("tp_btf/sched_process_fork")
int BPF_PROG(j_fork, struct task_struct *parent, struct task_struct *child)
{
    struct data_t data = {};

    data.p_pid = BPF_CORE_READ(parent, tgid);
    if (data.p_pid != TARGET_PID)
        return 0;
    data.c_pid = BPF_CORE_READ(child, pid);
    bpf_get_current_comm(&data.p_comm, TASK_COMM_LEN);
    bpf_core_read(&data.c_comm[0], TASK_COMM_LEN, &child->comm[0]);

    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class CeventOut(ClbcBase):
    def __init__(self, pid):
        super(CeventOut, self).__init__("eventOut", bpf_str=bpfPog,
                                        env="-DTARGET_PID=%d" % pid)
        self._count = 0

    def _cb(self, cpu, e):
        self._count += 1
        print("cpu: %d parent pid:%d, comm:%s. fork child pid: %d, comm: %s" % (
            cpu, e.p_pid, e.p_comm, e.c_pid, e.c_comm
        ))

    def _exit(self):
        print("events: %d" % self._count)

    def loop(self):
        CeventThread(self, 'e_out', self._cb)
        print("ready")
        self.waitInterrupt(self._exit)


if __name__ == "__main__":
    e = CeventOut(int(sys.argv[1]))
    e.loop()
