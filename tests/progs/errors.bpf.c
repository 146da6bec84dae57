// SPDX-License-Identifier: GPL-2.0
/* Programs that fail on purpose, each in its own way; tests load one at a time. */
#include "lbc.h"

LBC_HASH(vals, u32, u64, 16);

/* The verifier rejects this: the lookup result may be NULL. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int bad_mem(void *ctx)
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&vals, &k);

	return *v;
}

/* Loads, but the tracepoint does not exist. */
SEC("tracepoint/syscalls/sys_enter_no_such_call")
int missing_tp(void *ctx)
{
	return 0;
}

/* Loads (kprobe programs exist where uprobes do), but kprobes are off here. */
SEC("kprobe/do_nanosleep")
int kp(struct pt_regs *ctx)
{
	return 0;
}

/* Fine; uses CO-RE, so loading it needs the kernel's BTF. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int core_ok(void *ctx)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	u32 k = BPF_CORE_READ(t, tgid) & 7;
	u64 one = 1;

	bpf_map_update_elem(&vals, &k, &one, BPF_ANY);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
