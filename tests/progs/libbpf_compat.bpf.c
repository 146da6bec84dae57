// SPDX-License-Identifier: GPL-2.0
/*
 * A program in libbpf-tools' style (vmlinux.h and libbpf's headers, no
 * lbc.h) using what libbpf 1.1's headers lack: BPF_UPROBE/BPF_URETPROBE,
 * bpf_for/bpf_repeat, bpf_core_cast, bpf_ksym_exists, and kfuncs declared
 * by lcc's vmlinux.h.  The tests attach what they need explicitly.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

const volatile __u32 target_pid = 0;
const volatile long nr_getppid = -1;

__u64 up_hits, uret_hits;
long up_a, up_b, uret_val;
int loop_sum, cast_pid, kfunc_pid, kfunc_missing;
char kfunc_comm[16];
int sig_seen = -1;

static __always_inline bool mine(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_pid;
}

/* lcc_add(a, b) in the test's binary; arguments by name. */
SEC("uprobe")
int BPF_UPROBE(add_entry, int a, long b)
{
	__sync_fetch_and_add(&up_hits, 1);
	up_a = a;
	up_b = b;
	return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(add_return, long ret)
{
	__sync_fetch_and_add(&uret_hits, 1);
	uret_val = ret;
	return 0;
}

/* Needs kprobes to attach; loads anywhere. */
SEC("ksyscall/kill")
int BPF_KSYSCALL(kill_entry, pid_t pid, int sig)
{
	if (mine())
		sig_seen = sig;
	return 0;
}

/* Open-coded loops and a typed view of the current task. */
SEC("tp_btf/sys_enter")
int BPF_PROG(loops, struct pt_regs *regs, long id)
{
	struct task_struct *task;
	int i, sum = 0;

	if (!mine() || id != nr_getppid)
		return 0;
	bpf_for(i, 0, 5)
		sum += i;		/* 0+1+2+3+4 */
	bpf_repeat(3)
		sum += 100;
	loop_sum = sum;
	task = bpf_core_cast((void *)bpf_get_current_task(), struct task_struct);
	cast_pid = task->tgid;
	return 0;
}

/* A kfunc: look the caller up by pid, keep its comm, release it. */
SEC("tp/syscalls/sys_enter_getppid")
int kfunc_lookup(void *ctx)
{
	struct task_struct *task;

	if (!mine())
		return 0;
	if (!bpf_ksym_exists(bpf_task_from_pid)) {
		kfunc_missing = 1;
		return 0;
	}
	task = bpf_task_from_pid(target_pid);
	if (!task)
		return 0;
	kfunc_pid = task->tgid;
	bpf_probe_read_kernel_str(kfunc_comm, sizeof(kfunc_comm), task->comm);
	bpf_task_release(task);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
