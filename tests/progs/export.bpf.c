// SPDX-License-Identifier: GPL-2.0
/* lcc export test program: each getppid() of target_pid is counted by
 * {pid, comm}, by the parity of its call number, in a per-CPU total, in a
 * log2 histogram of its call number, and sent to a ring buffer. */
#include "lbc.h"

struct proc_key {
	u32 pid;
	char comm[16];
};

struct event {
	u32 pid;
	u64 n;
};

const volatile u32 target_pid = 0;
u64 seen = 0;

LBC_HASH(calls, struct proc_key, u64, 64);		/* {pid, comm} -> calls */
LBC_ARRAY(by_parity, u32, u64, 2);			/* call number % 2 -> calls */
LBC_PERCPU_ARRAY(cpu_calls, u32, u64, 1);		/* calls, per CPU */
LBC_HASH(n_hist, u32, u64, LBC_HIST_SLOTS);		/* log2 slot of the call number */
LBC_RINGBUF(events, struct event, 64 * 1024);

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	struct proc_key pk = {};
	struct event *e;
	u64 n, *v;
	u32 k = 0;

	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	/* the call number: 1, 2, 3... */
	n = __sync_fetch_and_add(&seen, 1) + 1;

	pk.pid = target_pid;
	bpf_get_current_comm(pk.comm, sizeof(pk.comm));
	lbc_count(&calls, &pk);

	k = n % 2;
	v = bpf_map_lookup_elem(&by_parity, &k);
	if (v)
		__sync_fetch_and_add(v, 1);

	k = 0;
	v = bpf_map_lookup_elem(&cpu_calls, &k);
	if (v)
		*v += 1;

	lbc_hist_add(n_hist, n);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = target_pid;
	e->n = n;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
