# -*- coding: utf-8 -*-
"""traceUprobe, in pyLCC's style: a uprobe on "binary:function" and the user stack of each hit.

``traceUprobes`` finds the function's offset in the binary; each hit sends
the pid and a user stack id; the callback symbolizes the stack with
ClbcUstack (the process's /proc/PID/maps and the ELF symbols), and once
more with lcc's ``frames(stack_id, pid=...)``.

usage: uprobe.py BINARY FUNCTION
"""

import sys

from pylcc.lbcBase import ClbcBase, CeventThread
from pylcc.lbcStack import ClbcUstack

bpfPog = r"""
#include "lbc.h"

struct data_t {
    u32 c_pid;
    u32 stack_id;
};

LBC_PERF_OUTPUT(e_out, struct data_t, 32);
LBC_STACK(call_stack, 32);

SEC("uprobe/*")
int call_symbol(struct pt_regs *ctx)
{
    struct data_t data = {};

    data.c_pid = bpf_get_current_pid_tgid() >> 32;
    data.stack_id = bpf_get_stackid(ctx, &call_stack, USER_STACKID_FLAGS);

    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class CtraceUprobe(ClbcBase):
    def __init__(self, binary, func):
        super(CtraceUprobe, self).__init__("traceUprobe", bpf_str=bpfPog, attach=0)
        self.traceUprobes("call_symbol", -1, "%s:%s" % (binary, func))

    def _cb(self, cpu, e):
        stacks = self.maps['call_stack'].getArr(e.stack_id)
        uStack = ClbcUstack(e.c_pid, stacks)
        print("hit in pid %d, stack: %s" % (e.c_pid, " | ".join(uStack.dumpStacks())))
        # the same through lcc's own stack map API
        frames = self.maps['call_stack'].frames(e.stack_id, pid=e.c_pid)
        print("frames: %s" % " | ".join(frames))

    def loop(self):
        CeventThread(self, 'e_out', self._cb)
        print("ready")
        self.waitInterrupt()


if __name__ == "__main__":
    u = CtraceUprobe(sys.argv[1], sys.argv[2])
    u.loop()
