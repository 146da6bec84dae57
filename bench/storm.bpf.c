// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * storm: one event per getppid() system call, for bench/tools_bench.py's
 * `lcc run --json` row (bench/loadgen.c makes the calls).
 */
#include "lbc.h"

struct storm_event {
	__u64 ts_ns;
	__u32 pid;
	__u32 tid;
	char comm[16];
};

/* 16 MiB: 400k events, a fifth of the storm at the rate loadgen makes it. */
LBC_RINGBUF(events, struct storm_event, 16 * 1024 * 1024);

__u64 dropped = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct storm_event *e;
	__u64 id = bpf_get_current_pid_tgid();

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = id >> 32;
	e->tid = (__u32)id;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	lbc_ringbuf_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
