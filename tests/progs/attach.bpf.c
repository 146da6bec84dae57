// SPDX-License-Identifier: GPL-2.0
/* One program per attach kind; tests attach them explicitly and count hits. */
#include "lbc.h"

const volatile u32 target_pid = 0;
const volatile long nr_getppid = -1;	/* the syscall number, for raw_tp/tp_btf */

u64 tp_hits, raw_hits, btf_hits;
u64 up_hits, up_arg, uret_hits;
s64 uret_val;

LBC_ARRAY(cpu_samples, u32, u64, 256);

static __always_inline bool mine(void)
{
	return !target_pid || (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

/* No target in the section: attached with attach_tracepoint(). */
SEC("tracepoint")
int tp_explicit(void *ctx)
{
	if (mine())
		__sync_fetch_and_add(&tp_hits, 1);
	return 0;
}

/* attach_raw_tracepoint(..., "sys_enter"): args[1] is the syscall number. */
SEC("raw_tp")
int raw_explicit(struct bpf_raw_tracepoint_args *ctx)
{
	if (mine() && ctx->args[1] == nr_getppid)
		__sync_fetch_and_add(&raw_hits, 1);
	return 0;
}

/* Attached by its section name. */
SEC("tp_btf/sys_enter")
int BPF_PROG(btf_enter, struct pt_regs *regs, long id)
{
	if (mine() && id == nr_getppid)
		__sync_fetch_and_add(&btf_hits, 1);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(up, long x)
{
	__sync_fetch_and_add(&up_hits, 1);
	up_arg = x;
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(uret, long ret)
{
	__sync_fetch_and_add(&uret_hits, 1);
	uret_val = ret;
	return 0;
}

/* perf event sampling: a count per CPU */
SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	u32 cpu = bpf_get_smp_processor_id();
	u64 *v = bpf_map_lookup_elem(&cpu_samples, &cpu);

	if (v)
		__sync_fetch_and_add(v, 1);
	return 0;
}

/* task iterator: one line per thread of target_pid */
SEC("iter/task")
int dump_task(struct bpf_iter__task *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct task_struct *task = ctx->task;

	if (!task || task->tgid != target_pid)
		return 0;
	BPF_SEQ_PRINTF(seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
