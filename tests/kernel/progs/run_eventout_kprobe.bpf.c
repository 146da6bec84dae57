// SPDX-License-Identifier: GPL-2.0
/* pyLCC's eventOut example: who forks whom, through a perf buffer, from a kprobe. */
#include "lbc.h"
#include "eventout.h"

SEC("kprobe/wake_up_new_task")
int j_wake_up_new_task(struct pt_regs *ctx)
{
	return send_fork(ctx, (struct task_struct *)PT_REGS_PARM1(ctx));
}

char _license[] SEC("license") = "GPL";
