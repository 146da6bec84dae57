// SPDX-License-Identifier: GPL-2.0
/* lcc run test program: one map of each shape, fed by lseek(2) calls of one process. */
#include "lbc.h"

struct event {
	u32 pid;
	s32 kstack_id;
	u64 offset;
	char comm[16];
};

struct group_key {
	u32 parity;
	u32 slot;
};

const volatile u32 targ_tgid = 0;
u64 seen = 0;

LBC_RINGBUF(events, struct event, 64 * 1024);
LBC_HASH(by_rem, u32, u64, 16);			/* offset % 3 -> count */
LBC_HASH(offset_hist, u32, u64, LBC_HIST_SLOTS);	/* log2 slot -> count */
LBC_ARRAY(slots, u32, u64, LBC_HIST_SLOTS);	/* the same, as an array */
LBC_ARRAY(small, u32, u64, 8);			/* offset % 8 -> count */
LBC_PERCPU_ARRAY(total, u32, u64, 1);		/* sum of the offsets */
LBC_HASH(by_parity, struct group_key, u64, 128);	/* a histogram per parity */
LBC_STACK(kstacks, 64);
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} raw_out SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_lseek")
int on_lseek(struct trace_event_raw_sys_enter *ctx)
{
	struct group_key gk = {};
	struct event *e;
	u64 off = ctx->args[1], *v;
	u32 k;

	if ((bpf_get_current_pid_tgid() >> 32) != targ_tgid)
		return 0;
	__sync_fetch_and_add(&seen, 1);
	k = off % 3;
	lbc_count(&by_rem, &k);
	lbc_hist_add(offset_hist, off);
	k = lbc_hist_slot(off);
	v = bpf_map_lookup_elem(&slots, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	k = off % 8;
	v = bpf_map_lookup_elem(&small, &k);
	if (v)
		__sync_fetch_and_add(v, 1);
	k = 0;
	v = bpf_map_lookup_elem(&total, &k);
	if (v)
		*v += off;
	gk.parity = off & 1;
	gk.slot = lbc_hist_slot(off);
	lbc_count(&by_parity, &gk);

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = targ_tgid;
	e->offset = off;
	e->kstack_id = bpf_get_stackid(ctx, &kstacks, 0);
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, 0);
	bpf_perf_event_output(ctx, &raw_out, BPF_F_CURRENT_CPU, &off, sizeof(off));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
