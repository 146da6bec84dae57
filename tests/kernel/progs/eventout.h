/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pyLCC's eventOut example, shared by its attach variants: who forks whom,
 * sent through a perf buffer.  A variant only finds the new task.
 */
#ifndef __EVENTOUT_H
#define __EVENTOUT_H

struct data_t {
	u32 c_pid;
	u32 p_pid;
	char c_comm[16];
	char p_comm[16];
};

LBC_PERF_OUTPUT(e_out, struct data_t, 128);

/*
 * current (c_) has just made task (p_; pyLCC's sample calls it `parent`):
 * send both pids and comms.
 */
static __always_inline int send_fork(void *ctx, struct task_struct *task)
{
	struct data_t data = {};

	data.c_pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&data.c_comm, TASK_COMM_LEN);
	data.p_pid = BPF_CORE_READ(task, pid);
	bpf_core_read(&data.p_comm[0], TASK_COMM_LEN, &task->comm[0]);

	bpf_perf_event_output(ctx, &e_out, BPF_F_CURRENT_CPU, &data, sizeof(data));
	return 0;
}

#endif /* __EVENTOUT_H */
