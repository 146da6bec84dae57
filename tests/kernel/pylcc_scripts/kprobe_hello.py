# -*- coding: utf-8 -*-
"""pyLCC's hello world, unchanged: a kprobe on wake_up_new_task.

On a kernel without kprobes it cannot attach; lcc says so in one line.
"""

import time

from pylcc.lbcBase import ClbcBase

bpfPog = r"""
#include "lbc.h"

SEC("kprobe/wake_up_new_task")
int j_wake_up_new_task(struct pt_regs *ctx)
{
    struct task_struct* parent = (struct task_struct *)PT_REGS_PARM1(ctx);

    bpf_printk("hello lcc, parent: %d\n", _(parent->tgid));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class Chello(ClbcBase):
    def __init__(self):
        super(Chello, self).__init__("hello", bpf_str=bpfPog)
        print("ready")
        while True:
            time.sleep(1)


if __name__ == "__main__":
    hello = Chello()
    pass
