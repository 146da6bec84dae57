// SPDX-License-Identifier: GPL-2.0
/*
 * offcpu: tasks off CPU longer than a threshold, with the kernel stack where
 * they blocked.
 *
 * At sched:sched_switch the outgoing task (still `current`) is stamped with
 * the time, its state and its kernel stack; when the same task is switched
 * back in, the time it spent off CPU is measured, sent to user space if it
 * passes the threshold, and added to the per-stack totals.
 */
#include "lbc.h"
#include "offcpu.h"

/* Knobs, set from Python before load. */
const volatile u32 targ_tgid = 0;	/* 0: any process */
const volatile u32 targ_tid = 0;	/* 0: any thread */
const volatile u32 self_tgid = 0;	/* the tracer itself, never traced */
const volatile bool filter_comm = false;
const volatile char targ_comm[TASK_COMM_LEN] = {};
const volatile u32 state_mask = 0x6;	/* bit n: trace state code n (default S and D) */
const volatile u64 min_ns = 1000000;
const volatile u64 max_ns = ~0ULL;
const volatile bool user_stacks = false;	/* also take the user stack (-U) */

/* The reported sched_switch prev_state of a preempted task (TASK_REPORT_MAX). */
#define OFFCPU_PREEMPTED 0x100

/* tid -> switch-out stamp; LRU so that tasks which never come back (exit) age out. */
LBC_LRU_HASH(start, u32, struct offcpu_start, 16384);
LBC_STACK(kstacks, 16384);
/* User stacks, with user_stacks only (offcpu.py shrinks it to one entry otherwise). */
LBC_STACK(ustacks, 16384);
LBC_RINGBUF(events, struct offcpu_event, 256 * 1024);
LBC_HASH(totals, struct offcpu_key, struct offcpu_total, 16384);

/* ps(1) state code from the tracepoint's prev_state (one TASK_REPORT bit, or 0). */
static __always_inline u32 state_code(long prev_state)
{
	if (prev_state == 0 || (prev_state & OFFCPU_PREEMPTED))
		return 0;
	for (u32 i = 0; i < 8; i++) {
		if (prev_state & (1 << i))
			return i + 1;
	}
	return 0;
}

SEC("tracepoint/sched/sched_switch")
int sched_switch(struct trace_event_raw_sched_switch *ctx)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u32 prev = ctx->prev_pid, next = ctx->next_pid;
	struct offcpu_start *st, s = {};
	struct offcpu_total *tot, zero = {};
	struct offcpu_key key = {};
	struct offcpu_event *e;
	u64 now = bpf_ktime_get_ns(), delta;

	/*
	 * 1. The outgoing task: stamp it if it passes the filters (pid 0 is idle;
	 * the outgoing task is still `current`, so its comm is current's).
	 */
	s.state = state_code(ctx->prev_state);
	if (prev && tgid != self_tgid && (state_mask & (1 << s.state)) &&
	    (!targ_tgid || tgid == targ_tgid) && (!targ_tid || prev == targ_tid) &&
	    (!filter_comm || lbc_current_comm_is(targ_comm))) {
		s.ts = now;
		s.tgid = tgid;
		s.kstack_id = bpf_get_stackid(ctx, &kstacks, 0);
		s.ustack_id = user_stacks ?
			bpf_get_stackid(ctx, &ustacks, BPF_F_USER_STACK) : -1;
		bpf_map_update_elem(&start, &prev, &s, BPF_ANY);
	}

	/* 2. The incoming task: how long was it away? */
	st = bpf_map_lookup_elem(&start, &next);
	if (!st)
		return 0;
	delta = now - st->ts;
	key.kstack_id = st->kstack_id;
	key.state = st->state;
	key.ustack_id = st->ustack_id;
	key.tgid = user_stacks ? st->tgid : 0;	/* user stacks are per process */
	tgid = st->tgid;
	bpf_map_delete_elem(&start, &next);
	if (delta < min_ns || delta > max_ns)
		return 0;

	/* 3. Add it to its stack's totals. */
	tot = lbc_lookup_or_init(&totals, &key, &zero);
	if (!tot)
		return 0;
	__sync_fetch_and_add(&tot->count, 1);
	__sync_fetch_and_add(&tot->total_ns, delta);
	if (delta > tot->max_ns)
		tot->max_ns = delta;

	/* 4. Send the event: reserve, fill, submit. */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->ts = now;
	e->delta_ns = delta;
	e->tid = next;
	e->pid = tgid;
	e->kstack_id = key.kstack_id;
	e->ustack_id = key.ustack_id;
	e->state = key.state;
	/* A copy at a computed ctx offset is refused by the verifier: read it. */
	bpf_probe_read_kernel(e->comm, sizeof(e->comm), ctx->next_comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
