# -*- coding: utf-8 -*-
"""dynamicVar, in pyLCC's style: the filter is written into the C source before it compiles.

The callback gets (cpu, data, size) and decodes with getMap(); the main
thread polls the perf buffer until Ctrl-C (KeyboardInterrupt), as the guide
does.

usage: dynamic_var.py PID
"""

import sys

from pylcc.lbcBase import ClbcBase

bpfPog = r"""
#include "lbc.h"
#define TASK_COMM_LEN 16
struct data_t {
    u32 pid;
    u32 ppid;
    char comm[TASK_COMM_LEN];
};

LBC_PERF_OUTPUT(e_out, struct data_t, 128);
SEC("tracepoint/syscalls/sys_enter_getppid")
int j_getppid(void *ctx)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct data_t data = {};
    u32 pid = bpf_get_current_pid_tgid() >> 32;

    if (pid != FILTER_PID) {
        return 0;
    }
    data.pid = pid;
    data.ppid = BPF_CORE_READ(task, real_parent, tgid);
    bpf_get_current_comm(&data.comm, TASK_COMM_LEN);

    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class CdynamicVar(ClbcBase):
    def __init__(self):
        super(CdynamicVar, self).__init__("dynamicVar", bpf_str=bpfPog)

    def _cb(self, cpu, data, size):
        e = self.getMap('e_out', data, size)
        print("pid:%d, comm:%s, parent: %d" % (e.pid, e.comm, e.ppid))

    def loop(self):
        self.maps['e_out'].open_perf_buffer(self._cb)
        try:
            print("ready")
            self.maps['e_out'].perf_buffer_poll()
        except KeyboardInterrupt:
            print("key interrupt.")
            exit()


if __name__ == "__main__":
    bpfPog = bpfPog.replace("FILTER_PID", sys.argv[1])
    e = CdynamicVar()
    e.loop()
