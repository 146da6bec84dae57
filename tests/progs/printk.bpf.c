// SPDX-License-Identifier: GPL-2.0
/* bpf_printk() from getppid(2) of one process: what trace_fields() and lcc run --printk read. */
#include "lbc.h"

const volatile u32 target_pid = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int say(void *ctx)
{
	/* trace_pipe is system-wide: only the test's own calls write to it */
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	bpf_printk("lcc %d", 42);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
