// SPDX-License-Identifier: GPL-2.0
/*
 * lcc run test program in the style of libbpf-tools' runqlat and cpudist,
 * on lseek(2) offsets instead of scheduler latencies:
 * - a tp_btf program and its raw_tp copy (a loader loads one of them);
 * - a hash map without max_entries (the loader sizes it);
 * - .bss holding only static variables (libbpf maps it without mmap).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "libbpf_runqlat.h"

const volatile pid_t targ_tgid = 0;
const volatile long targ_syscall = -1;

static struct hist zero;
static __u64 total_calls;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, struct hist);
} hists SEC(".maps");

static __always_inline u32 log2_slot(u64 v)
{
	u32 slot = 0;

	/* slot 0 holds 0 and 1, slot k holds [2^k, 2^(k+1)) */
	for (int i = 0; i < 63 && v > 1; i++) {
		v >>= 1;
		slot++;
	}
	return slot < MAX_SLOTS ? slot : MAX_SLOTS - 1;
}

static __always_inline int record(struct pt_regs *regs, long id)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct hist *h;
	u64 offset;

	if (tgid != targ_tgid || id != targ_syscall)
		return 0;
	/* the histogram of this process, made from the zeroed one */
	h = bpf_map_lookup_elem(&hists, &tgid);
	if (!h) {
		bpf_map_update_elem(&hists, &tgid, &zero, BPF_NOEXIST);
		h = bpf_map_lookup_elem(&hists, &tgid);
		if (!h)
			return 0;
		bpf_get_current_comm(&h->comm, sizeof(h->comm));
	}
	offset = PT_REGS_PARM2_CORE_SYSCALL(regs);
	__sync_fetch_and_add(&h->slots[log2_slot(offset)], 1);
	__sync_fetch_and_add(&total_calls, 1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter_btf, struct pt_regs *regs, long id)
{
	return record(regs, id);
}

SEC("raw_tp/sys_enter")
int BPF_PROG(sys_enter_raw, struct pt_regs *regs, long id)
{
	return record(regs, id);
}

char LICENSE[] SEC("license") = "GPL";
