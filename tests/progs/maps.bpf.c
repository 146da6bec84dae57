// SPDX-License-Identifier: GPL-2.0
/* Map round trips: Python writes, the program reads and answers; the
 * program writes, Python reads.  Runs on getppid() from target_pid only. */
#include "lbc.h"
#include "maps.h"

const volatile u32 target_pid = 0;

LBC_HASH(hash_in, u32, struct rec, 64);
LBC_HASH(hash_out, u32, struct rec, 64);
LBC_LRU_HASH(lru, u32, u64, 16);
LBC_ARRAY(arr, u32, u64, 8);
LBC_PERCPU_HASH(pc_hash, u32, u64, 16);
LBC_PERCPU_ARRAY(pc_arr, u32, struct pair, 4);
LBC_LRU_PERCPU_HASH(lru_pc, u32, u64, 16);
LBC_HASH(big, u32, u64, 8192);
LBC_STACK(stacks, 64);

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 16);
	__type(value, u32);
} queue SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 16);
	__type(value, u32);
} stack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4);
	__type(value, u32);
} trie SEC(".maps");

/* A kind lcc has no class for: it still gets a generic map. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u32);
} jumps SEC(".maps");

static __always_inline void arr_set(u32 slot, u64 v)
{
	bpf_map_update_elem(&arr, &slot, &v, BPF_ANY);
}

static __always_inline u64 arr_get(u32 slot)
{
	u64 *v = bpf_map_lookup_elem(&arr, &slot);

	return v ? *v : 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int roundtrip(void *ctx)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	u32 k1 = 1, k2 = 2, k7 = 7, k8 = 8, zero = 0, one = 1;
	struct rec *in, out = {};
	struct pair *p;
	u64 *v, n;
	u32 qv;

	if (target_pid && pid != target_pid)
		return 0;

	/* hash: echo hash_in[1] into hash_out[2] with count+1 and x*2 */
	in = bpf_map_lookup_elem(&hash_in, &k1);
	if (in) {
		out = *in;
		out.count += 1;
		out.inner.x *= 2;
		bpf_map_update_elem(&hash_out, &k2, &out, BPF_ANY);
	}

	/* array: double slot 0, count calls */
	arr_set(ARR_DOUBLE, arr_get(ARR_IN) * 2);
	n = arr_get(ARR_CALLS) + 1;
	arr_set(ARR_CALLS, n);

	/* hash written by the program alone: pid -> calls */
	__builtin_memset(&out, 0, sizeof(out));
	out.count = n;
	__builtin_memcpy(out.name, "from-bpf", 9);
	bpf_map_update_elem(&hash_out, &pid, &out, BPF_ANY);

	/* LRU hash: lru[8] = lru[7] + 1 */
	v = bpf_map_lookup_elem(&lru, &k7);
	if (v) {
		n = *v + 1;
		bpf_map_update_elem(&lru, &k8, &n, BPF_ANY);
	}

	/* per-CPU hash: count on this CPU, report what Python wrote for it */
	lbc_count(&pc_hash, &zero);
	v = bpf_map_lookup_elem(&pc_hash, &one);
	if (v)
		arr_set(ARR_PERCPU_SEEN, *v);
	arr_set(ARR_CPU, bpf_get_smp_processor_id());

	/* per-CPU array of structs */
	p = bpf_map_lookup_elem(&pc_arr, &zero);
	if (p) {
		p->a += 1;
		p->b += 2;
	}

	/* LRU per-CPU hash */
	lbc_count(&lru_pc, &pid);

	/* queue -> stack: pop what Python pushed, push it back times ten */
	for (int i = 0; i < 4; i++) {
		if (bpf_map_pop_elem(&queue, &qv))
			break;
		qv *= 10;
		bpf_map_push_elem(&stack, &qv, 0);
	}

	/* stack trace of this syscall */
	arr_set(ARR_STACKID, (u64)bpf_get_stackid(ctx, &stacks, KERN_STACKID_FLAGS));

	/* LPM trie: longest prefix for 10.1.2.3 */
	struct lpm_v4 key = { .prefixlen = 32, .addr = { 10, 1, 2, 3 } };
	u32 *tv = bpf_map_lookup_elem(&trie, &key);
	arr_set(ARR_LPM, tv ? *tv : 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
