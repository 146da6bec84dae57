// SPDX-License-Identifier: GPL-2.0
/*
 * ring_bench: the program runtime_bench.py loads with lcc and with a plain C
 * libbpf loader.  Each getppid() of the target process writes `per_call`
 * events to the ring buffer (bpf_loop), so a short burst of system calls
 * fills the ring with a known number of events in a known order.
 * Built with -DBENCH_CORE it filters through a CO-RE read, so that loading it
 * parses the kernel's BTF as real tools' objects do.
 */
#include "lbc.h"

struct bench_event {
	u64 seq;
	u64 ts;
	u32 pid;
	u32 cpu;
};

const volatile u32 target_tgid = 0;	/* only this process's getppid() counts */
const volatile u32 per_call = 64;	/* events per getppid() */

u64 seq = 0;
u64 dropped = 0;

/* 256 KiB as a tool would have; the bench resizes it before load. */
LBC_RINGBUF(events, struct bench_event, 1 << 18);

static long emit(u32 i, void *ctx)
{
	struct bench_event *e;

	/* reserve, fill, submit */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 1;
	}
	e->seq = seq++;
	e->ts = bpf_ktime_get_ns();
	e->pid = target_tgid;
	e->cpu = bpf_get_smp_processor_id();
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
#ifdef BENCH_CORE
	/* A CO-RE read, as real tools make: loading it needs the kernel's BTF. */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	if (BPF_CORE_READ(task, tgid) != target_tgid)
		return 0;
#else
	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
#endif
	bpf_loop(per_call, emit, NULL, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
