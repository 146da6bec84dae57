# -*- coding: utf-8 -*-
"""hashMap, in pyLCC's style: count a process's getppid() calls per pid in a hash map.

Each call is also an event (CeventThread); on SIGINT the map is printed
(``get()``, a dict) by the callback given to waitInterrupt.

usage: hash_map.py PID
"""

import sys

from pylcc.lbcBase import ClbcBase, CeventThread

bpfPog = r"""
#include "lbc.h"
struct data_t {
    u32 pid;
    u32 cnt;
};

LBC_PERF_OUTPUT(e_out, struct data_t, 128);
LBC_HASH(pid_cnt, u32, u32, 1024);

SEC("tracepoint/syscalls/sys_enter_getppid")
int j_getppid(void *ctx)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u32 *pcnt, cnt;
    struct data_t data = {};

    if (pid != TARGET_PID)
        return 0;
    pcnt = bpf_map_lookup_elem(&pid_cnt, &pid);
    cnt = pcnt ? *pcnt + 1 : 1;
    bpf_map_update_elem(&pid_cnt, &pid, &cnt, BPF_ANY);

    data.pid = pid;
    data.cnt = cnt;
    bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class ChashMap(ClbcBase):
    def __init__(self, pid):
        super(ChashMap, self).__init__("hashMap", bpf_str=bpfPog, env="-DTARGET_PID=%d" % pid)

    def _cb(self, cpu, e):
        print("pid %d called getppid %d times" % (e.pid, e.cnt))

    def _exit(self):
        dMap = self.maps['pid_cnt']
        print(dMap.get())

    def loop(self):
        CeventThread(self, 'e_out', self._cb)
        print("ready")
        self.waitInterrupt(self._exit)


if __name__ == "__main__":
    e = ChashMap(int(sys.argv[1]))
    e.loop()
