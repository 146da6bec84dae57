# -*- coding: utf-8 -*-
"""mulitEvent, in pyLCC's style: two perf event maps, one CeventThread each.

getppid() calls go to e1_out, getpgid() calls to e2_out, through a helper
that takes the map as pyLCC programs declare it (``struct bpf_map_def *``).

usage: two_events.py PID
"""

import sys

from pylcc.lbcBase import ClbcBase, CeventThread

bpfPog = r"""
#include "lbc.h"
struct data_t {
    u32 pid;
    u32 map;
};

LBC_PERF_OUTPUT(e1_out, struct data_t, 128);
LBC_PERF_OUTPUT(e2_out, struct data_t, 128);

static __always_inline int emit(void *ctx, struct bpf_map_def *out, u32 map)
{
    struct data_t data = {};

    data.pid = bpf_get_current_pid_tgid() >> 32;
    if (data.pid != TARGET_PID)
        return 0;
    data.map = map;
    bpf_perf_event_output(ctx, out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int j_getppid(void *ctx)
{
    return emit(ctx, &e1_out, 1);
}

SEC("tracepoint/syscalls/sys_enter_getpgid")
int j_getpgid(void *ctx)
{
    return emit(ctx, &e2_out, 2);
}

char _license[] SEC("license") = "GPL";
"""


class CmulitEvent(ClbcBase):
    def __init__(self, pid):
        super(CmulitEvent, self).__init__("mulitEvent", bpf_str=bpfPog,
                                          env="-DTARGET_PID=%d" % pid)

    def _cb_e1(self, cpu, e):
        print("e1: pid %d map %d" % (e.pid, e.map))

    def _cb_e2(self, cpu, e):
        print("e2: pid %d map %d" % (e.pid, e.map))

    def loop(self):
        CeventThread(self, "e1_out", self._cb_e1)
        CeventThread(self, "e2_out", self._cb_e2)
        print("ready")
        self.waitInterrupt()


if __name__ == "__main__":
    m = CmulitEvent(int(sys.argv[1]))
    m.loop()
