# -*- coding: utf-8 -*-
"""A log2 and a log10 histogram, in pyLCC's style (LBC_HIST2/LBC_HIST10, showHist).

The offsets a process passes to lseek(fd, offset, SEEK_SET) are pushed into
both histograms;
on SIGINT they are shown, with the hist2 counts as ``get()`` returns them.

usage: hist.py PID
"""

import sys

from pylcc.lbcBase import ClbcBase

bpfProg = r"""
#include "lbc.h"

LBC_HIST2(hist2);
LBC_HIST10(hist10);

SEC("tracepoint/syscalls/sys_enter_lseek")
int j_lseek(struct trace_event_raw_sys_enter *ctx)
{
    long offset = ctx->args[1];

    if ((bpf_get_current_pid_tgid() >> 32) != TARGET_PID)
        return 0;
    if (ctx->args[2] != 0)  /* SEEK_SET only: opening a file in Python seeks too */
        return 0;
    hist2_push(&hist2, offset);
    hist10_push(&hist10, offset);
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class Clseek(ClbcBase):
    def __init__(self, pid):
        super(Clseek, self).__init__("lseekDist", bpf_str=bpfProg, env="-DTARGET_PID=%d" % pid)

    def proc(self):
        self.maps['hist2'].showHist("hist2:")
        self.maps['hist10'].showHist("hist10:")
        print("hist2 counts: %r" % self.maps['hist2'].get(20))


if __name__ == "__main__":
    dist = Clseek(int(sys.argv[1]))
    print("ready")
    dist.waitInterrupt(dist.proc)
