// SPDX-License-Identifier: GPL-2.0
/*
 * lcc run test program in the style of libbpf-tools' profile: a perf_event
 * program, attached by its loader to a sampling event on every CPU, and
 * maps it leaves at 0 entries.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, u64);
} samples SEC(".maps");

SEC("perf_event")
int do_perf_event(struct bpf_perf_event_data *ctx)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	u64 *count, one = 1;

	if (tgid != targ_tgid)
		return 0;
	/* count this sample for its process */
	count = bpf_map_lookup_elem(&samples, &tgid);
	if (count)
		__sync_fetch_and_add(count, 1);
	else
		bpf_map_update_elem(&samples, &tgid, &one, BPF_NOEXIST);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
