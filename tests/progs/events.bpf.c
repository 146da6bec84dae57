// SPDX-License-Identifier: GPL-2.0
/* Events through a ring buffer and a perf buffer, decoded in Python through BTF. */
#include "lbc.h"
#include "events.h"

const volatile u32 target_pid = 0;
u64 seq = 0;

LBC_RINGBUF(rb, struct event, 1 << 16);
LBC_PERF_OUTPUT(pb, struct event, 8);
/* A single page per CPU: one burst of events overflows it. */
LBC_PERF_OUTPUT(pb_small, struct event, 1);

/* Declared without the lbc.h macro: Python names its event type. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 14);
} rb_plain SEC(".maps");

static __always_inline void fill(struct event *e, u32 pid, u64 n)
{
	e->pid = pid;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	__builtin_memcpy(e->tag, "lcc!", 5);
	e->in.pt.x = -7;
	e->in.pt.y = 65535;
	e->in.bytes[0] = 1;
	e->in.bytes[1] = 2;
	e->in.bytes[2] = 3;
	e->arr[0] = n;
	e->arr[1] = n * 2;
	e->arr[2] = 0xdeadbeefcafeULL;
	e->un.word = 0x04030201;
	e->bits.a = 5;
	e->bits.b = 17;
	e->bits.c = 0xabcdef;
	e->bits.sb = -3;
	e->color = BLUE;
	e->neg = -42;
	e->alias_a = 77;
	e->seq = n;
}

static __always_inline bool mine(u32 *pid)
{
	*pid = bpf_get_current_pid_tgid() >> 32;
	return !target_pid || *pid == target_pid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int emit(void *ctx)
{
	struct event ev = {}, *e;
	u32 pid;
	u64 n;

	if (!mine(&pid))
		return 0;
	n = __sync_fetch_and_add(&seq, 1) + 1;

	/* ring buffer: reserve, fill, submit */
	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	fill(e, pid, n);
	bpf_ringbuf_submit(e, 0);

	/* the same event through the perf buffer and the plain ring buffer */
	fill(&ev, pid, n);
	bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	bpf_ringbuf_output(&rb_plain, &ev, sizeof(ev), 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpgid")
int burst(void *ctx)
{
	struct event ev = {};
	u32 pid;

	if (!mine(&pid))
		return 0;
	fill(&ev, pid, 0);
	for (int i = 0; i < BURST; i++) {
		ev.seq = i;
		bpf_perf_event_output(ctx, &pb_small, BPF_F_CURRENT_CPU, &ev, sizeof(ev));
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
