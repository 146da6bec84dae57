// SPDX-License-Identifier: GPL-2.0
/* What lbc.h gives pyLCC programs: _(), byte order helpers, log2 histograms. */
#include "lbc.h"

const volatile u32 target_pid = 0;

u64 values[8];			/* written by Python: what to put in the histogram */
u32 tgid_read;			/* _(task->tgid) */
u16 be16;			/* htons(0x1234) */
u32 be32;			/* htonl(0x12345678) */
u16 back16;			/* ntohs(htons(0xbeef)) */

LBC_ARRAY(hist, u32, u64, LBC_HIST_SLOTS);
LBC_HASH(counts, u32, u64, 16);

SEC("tracepoint/syscalls/sys_enter_getppid")
int lbc(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	tgid_read = _(task->tgid);
	be16 = htons(0x1234);
	be32 = htonl(0x12345678);
	back16 = ntohs(htons(0xbeef));
	for (int i = 0; i < 8; i++)
		lbc_hist_add(hist, values[i]);
	lbc_count(&counts, &pid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
