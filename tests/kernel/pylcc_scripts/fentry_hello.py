# -*- coding: utf-8 -*-
"""An fentry program in a pyLCC script.  Where the kernel refuses fentry
(no trampolines, lockdown), lcc says so in one line."""

import time

from pylcc.lbcBase import ClbcBase

bpfPog = r"""
#include "lbc.h"

SEC("fentry/do_nanosleep")
int BPF_PROG(j_nanosleep)
{
    bpf_printk("nanosleep\n");
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class Chello(ClbcBase):
    def __init__(self):
        super(Chello, self).__init__("fentryHello", bpf_str=bpfPog)
        print("ready")
        while True:
            time.sleep(1)


if __name__ == "__main__":
    Chello()
