// SPDX-License-Identifier: GPL-2.0
/*
 * pyLCC's eventOut example, attached to the sched_wakeup_new tracepoint (tp_btf)
 * instead of the wake_up_new_task kprobe: who forks whom, through a perf buffer.
 */
#include "lbc.h"
#include "eventout.h"

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(j_wake_up_new_task, struct task_struct *task)
{
	return send_fork(ctx, task);
}

char _license[] SEC("license") = "GPL";
