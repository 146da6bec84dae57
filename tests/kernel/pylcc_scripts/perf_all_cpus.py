# -*- coding: utf-8 -*-
"""irqoff-style, in pyLCC's style: a cpu-clock perf event on every CPU.

The program counts its samples per CPU in an array and sends an event on
the first sample of each CPU; on SIGINT the counts are printed with the
array's pyLCC ``get(size)``.

usage: perf_all_cpus.py
"""

from multiprocessing import cpu_count

from pylcc.lbcBase import ClbcBase, CeventThread
from pylcc.perfEvent import *

bpfPog = r"""
#include "lbc.h"
struct data_t {
    u32 cpu;
    u32 pid;
};

LBC_ARRAY(samples, u32, u64, 1024);
LBC_PERF_OUTPUT(e_first, struct data_t, 16);

SEC("perf_event")
int sw_clock(struct bpf_perf_event_data *ctx)
{
    u32 cpu = bpf_get_smp_processor_id();
    u64 *count = bpf_map_lookup_elem(&samples, &cpu);

    if (count && __sync_fetch_and_add(count, 1) == 0) {
        struct data_t data = {};

        data.cpu = cpu;
        data.pid = bpf_get_current_pid_tgid() >> 32;
        bpf_perf_event_output(ctx, &e_first, BPF_F_CURRENT_CPU, &data, sizeof(data));
    }
    return 0;
}

char _license[] SEC("license") = "GPL";
"""


class CperfAll(ClbcBase):
    def __init__(self):
        super(CperfAll, self).__init__("perfAll", bpf_str=bpfPog)

    def _setupSw(self):
        pfConfig = {
            "sample_freq": 1000,
            "freq": 1,
            "type": PerfType.SOFTWARE,
            "config": PerfSwConfig.CPU_CLOCK,
        }
        CeventThread(self, 'e_first', self._cb)  # open before the first samples come
        group = self.attachAllCpuPerf("sw_clock", pfConfig)
        print("attached on %d cpus" % len(group.links))

    def _cb(self, cpu, e):
        print("first sample on cpu %d (pid %d)" % (e.cpu, e.pid))

    def _exit(self):
        print("samples: %r" % self.maps['samples'].get(cpu_count()))

    def loop(self):
        self._setupSw()
        print("ready")
        self.waitInterrupt(self._exit)


if __name__ == "__main__":
    i = CperfAll()
    i.loop()
