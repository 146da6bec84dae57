// SPDX-License-Identifier: GPL-2.0
/*
 * syslat: per-syscall latency histograms for a process, a thread or a command.
 *
 * raw_syscalls:sys_enter stamps the thread's syscall, raw_syscalls:sys_exit
 * adds the elapsed time to the syscall's log2 histogram and totals.
 */
#include "lbc.h"
#include "syslat.h"

/* Knobs, set from Python before load. */
const volatile u32 targ_tgid = 0;	/* 0: any process */
const volatile u32 targ_tid = 0;	/* 0: any thread */
const volatile u32 self_tgid = 0;	/* the tracer itself, never traced */
const volatile bool filter_comm = false;
const volatile char targ_comm[TASK_COMM_LEN] = {};
const volatile bool filter_syscalls = false;
const volatile u8 traced[SYSLAT_MAX_SYSCALLS] = {};
const volatile u64 unit_ns = 1000;	/* histogram unit: 1 (ns), 1000 (us), 1000000 (ms) */
const volatile bool failed_only = false;	/* -x: only calls that returned an error */

/* A return value in -4095..-1 is an error (-errno), as libc decides. */
#define SYSLAT_MAX_ERRNO 4095

/* tid -> syscall in flight; LRU so that threads which never return (exit) age out. */
LBC_LRU_HASH(start, u32, struct syslat_start, 10240);
/* {syscall, log2 slot} -> count */
LBC_HASH(hists, struct syslat_hist_key, u64, SYSLAT_MAX_SYSCALLS * 24);
/* syscall -> count, total and maximum time */
LBC_HASH(stats, u32, struct syslat_stat, SYSLAT_MAX_SYSCALLS);
/* {syscall, errno} -> count */
LBC_HASH(errnos, struct syslat_errno_key, u64, 4096);

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32, tid = (u32)id;
	long nr = ctx->id;
	struct syslat_start st = {};

	/* Filter: process, thread, command, syscall. */
	if (tgid == self_tgid)
		return 0;
	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (targ_tid && tid != targ_tid)
		return 0;
	if (nr < 0 || nr >= SYSLAT_MAX_SYSCALLS)
		return 0;
	if (filter_syscalls && !traced[nr])
		return 0;
	if (filter_comm && !lbc_current_comm_is(targ_comm))
		return 0;

	/* Stamp the syscall in flight on this thread. */
	st.ts = bpf_ktime_get_ns();
	st.nr = nr;
	bpf_map_update_elem(&start, &tid, &st, BPF_ANY);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct syslat_hist_key hk = {};
	struct syslat_stat *s, zero = {};
	struct syslat_start *st;
	long ret = ctx->ret;
	bool failed = ret < 0 && ret >= -SYSLAT_MAX_ERRNO;
	u64 delta;

	/* Only syscalls whose entry we stamped (and so passed the filters). */
	st = bpf_map_lookup_elem(&start, &tid);
	if (!st)
		return 0;
	delta = bpf_ktime_get_ns() - st->ts;
	hk.nr = st->nr;
	bpf_map_delete_elem(&start, &tid);
	if (failed_only && !failed)
		return 0;

	/* Histogram slot of the latency, in the chosen unit. */
	hk.slot = lbc_hist_slot(delta / unit_ns);
	lbc_count(&hists, &hk);

	/* Totals for the average and the maximum. */
	s = lbc_lookup_or_init(&stats, &hk.nr, &zero);
	if (!s)
		return 0;
	__sync_fetch_and_add(&s->count, 1);
	__sync_fetch_and_add(&s->total_ns, delta);
	if (delta > s->max_ns)
		s->max_ns = delta;

	/* Errors, by errno. */
	if (failed) {
		struct syslat_errno_key ek = { .nr = hk.nr, .err = (u32)-ret };

		__sync_fetch_and_add(&s->errors, 1);
		lbc_count(&errnos, &ek);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
