// SPDX-License-Identifier: GPL-2.0
/*
 * libbpf-bootstrap's minimal.bpf.c, counting instead of printing: UAPI
 * headers (<linux/bpf.h> -> <linux/types.h> -> <asm/types.h>), no vmlinux.h.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int my_pid = 0;
__u64 hits = 0;

SEC("tp/syscalls/sys_enter_getppid")
int handle_tp(void *ctx)
{
	int pid = bpf_get_current_pid_tgid() >> 32;

	if (pid != my_pid)
		return 0;
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
