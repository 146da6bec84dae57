# -*- coding: utf-8 -*-
"""A hardware write breakpoint, in pyLCC's style (as its memory-tracing article sets one).

The breakpoint watches a variable of this very process (pid 0, any CPU);
the program reads the value written and sends it up.  After "ready" the
script writes 1..COUNT into the variable, then waits for SIGINT.

usage: hw_breakpoint.py COUNT
"""

import ctypes
import sys

from pylcc.lbcBase import ClbcBase, CeventThread
from pylcc.perfEvent import *

bpfPog = r"""
#include "lbc.h"
struct data_t {
    u32 pid;
    u64 addr;
    u64 value;
};

LBC_PERF_OUTPUT(e_out, struct data_t, 16);

SEC("perf_event")
int bpf_prog(struct bpf_perf_event_data *ctx)
{
    struct data_t data = {};

    data.pid = bpf_get_current_pid_tgid() >> 32;
    data.addr = ctx->addr;
    bpf_probe_read_user(&data.value, sizeof(data.value), (void *)ctx->addr);
    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""

watched = ctypes.c_uint64(0)


class CmemWatch(ClbcBase):
    def __init__(self):
        super(CmemWatch, self).__init__("memWatch", bpf_str=bpfPog)

    def _setupPerf(self, addr):
        pfConfig = {
            "type": PerfType.BREAKPOINT,
            "size": PERF_ATTR_SIZE_VER5,
            "sample_period": 1,
            "precise_ip": 2,
            "wakeup_events": 1,
            "bp_type": PerfBreakPointType.W,
            "bp_addr": addr,
            "bp_len": 8,
        }
        self.attachPerfEvent("bpf_prog", pfConfig, pid=0, cpu=-1, flags=PerfFlag.FD_CLOEXEC)

    def _cb(self, cpu, e):
        print("write at 0x%x by pid %d: %d" % (e.addr, e.pid, e.value))

    def loop(self, count):
        self._setupPerf(ctypes.addressof(watched))
        CeventThread(self, 'e_out', self._cb)
        print("ready, watching 0x%x" % ctypes.addressof(watched))
        for i in range(1, count + 1):
            watched.value = i
        self.waitInterrupt()


if __name__ == "__main__":
    CmemWatch().loop(int(sys.argv[1]))
