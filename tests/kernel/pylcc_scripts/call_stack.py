# -*- coding: utf-8 -*-
"""callStack, in pyLCC's style: the kernel stack of each getppid() of a process.

The stack is printed by the map's ``getStacks`` and by lbcStack's
``getKStacks``.  Each event also carries an id that is an error code
(``bpf_get_stackid`` returns -EFAULT when it cannot take a stack): the
helpers must not raise for it inside the callback.

usage: call_stack.py PID
"""

import sys

from pylcc.lbcBase import ClbcBase, CeventThread
from pylcc.lbcStack import getKStacks

bpfPog = r"""
#include "lbc.h"
struct data_t {
    u32 pid;
    u32 stack_id;
    u32 bad_id;
};

LBC_PERF_OUTPUT(e_out, struct data_t, 128);
LBC_STACK(call_stack, 32);

SEC("tracepoint/syscalls/sys_enter_getppid")
int j_getppid(void *ctx)
{
    struct data_t data = {};

    data.pid = bpf_get_current_pid_tgid() >> 32;
    if (data.pid != TARGET_PID)
        return 0;
    data.stack_id = bpf_get_stackid(ctx, &call_stack, KERN_STACKID_FLAGS);
    data.bad_id = -14;  /* what bpf_get_stackid stores when it fails: -EFAULT */
    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class CcallStack(ClbcBase):
    def __init__(self, pid):
        super(CcallStack, self).__init__("callStack", bpf_str=bpfPog,
                                         env="-DTARGET_PID=%d" % pid)

    def _cb(self, cpu, e):
        print("cpu: %d pid: %d" % (cpu, e.pid))
        stacks = self.maps['call_stack'].getStacks(e.stack_id)
        print("call trace:")
        for s in stacks:
            print(s)
        print("names: " + " ".join(getKStacks(self.maps['call_stack'], e.stack_id)))
        print("bad id: %r %r %r" % (self.maps['call_stack'].getStacks(e.bad_id),
                                    getKStacks(self.maps['call_stack'], e.bad_id),
                                    self.maps['call_stack'].getArr(e.bad_id)))

    def loop(self):
        CeventThread(self, 'e_out', self._cb)
        print("ready")
        self.waitInterrupt()
        print("done")


if __name__ == "__main__":
    e = CcallStack(int(sys.argv[1]))
    e.loop()
