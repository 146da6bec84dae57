// SPDX-License-Identifier: GPL-2.0
/*
 * lcc run test program in the style of libbpf-tools' execsnoop: a plain
 * BPF_MAP_TYPE_RINGBUF (no lbc.h, no event type in the map) carrying
 * struct event, which the program only points to from locals.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "libbpf_execsnoop.h"

const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, char[FILENAME_LEN]);
} filenames SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int tracepoint__syscalls__sys_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	static const char empty[FILENAME_LEN] = {};
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	char *fname;

	if (targ_tgid && (id >> 32) != targ_tgid)
		return 0;
	/* remember the file name until the call returns */
	if (bpf_map_update_elem(&filenames, &tid, &empty, BPF_ANY))
		return 0;
	fname = bpf_map_lookup_elem(&filenames, &tid);
	if (fname)
		bpf_probe_read_user_str(fname, FILENAME_LEN, (const char *)ctx->args[0]);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int tracepoint__syscalls__sys_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	struct task_struct *task;
	struct event *e;
	char *fname;

	fname = bpf_map_lookup_elem(&filenames, &tid);
	if (!fname)
		return 0;
	/* reserve, fill, submit */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		goto cleanup;
	task = (struct task_struct *)bpf_get_current_task();
	e->pid = id >> 32;
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->uid = (u32)bpf_get_current_uid_gid();
	e->retval = ctx->ret;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), fname);
	bpf_ringbuf_submit(e, 0);
cleanup:
	bpf_map_delete_elem(&filenames, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
