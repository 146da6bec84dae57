// SPDX-License-Identifier: GPL-2.0
/* Programs the verifier rejects, one common mistake each; tests load one at a time. */
#include "lbc.h"

struct slots {
	u64 slots[8];
};

LBC_ARRAY(counts, u32, struct slots, 1);
LBC_HASH(by_key, u32, struct slots, 16);

/* The lookup result is used without checking it for NULL (a hash map: an
 * array lookup with a constant key is known non-NULL on newer kernels). */
SEC("tracepoint/syscalls/sys_enter_getppid")
int unchecked(void *ctx)
{
	u32 k = 0;
	struct slots *v = bpf_map_lookup_elem(&by_key, &k);

	v->slots[0] += 1;
	return 0;
}

/* The index comes from the pid and is never bounded. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int unbounded(void *ctx)
{
	u32 k = 0, idx = bpf_get_current_pid_tgid();
	struct slots *v = bpf_map_lookup_elem(&counts, &k);

	if (!v)
		return 0;
	v->slots[idx] += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
