// SPDX-License-Identifier: GPL-2.0
/*
 * lcc run test program in the style of libbpf-tools' opensnoop: a plain
 * BPF_MAP_TYPE_PERF_EVENT_ARRAY fed from a struct event on the stack (a
 * type that, unless lcc keeps it, is not in the object's BTF).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "libbpf_opensnoop.h"

const volatile pid_t targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, struct args_t);
} start SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(u32));
	__uint(value_size, sizeof(u32));
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	struct args_t args = {};

	if (targ_tgid && (id >> 32) != targ_tgid)
		return 0;
	/* remember the arguments until the call returns */
	args.fname = (const char *)ctx->args[1];
	args.flags = (int)ctx->args[2];
	bpf_map_update_elem(&start, &tid, &args, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = id;
	struct event event = {};
	struct args_t *ap;

	ap = bpf_map_lookup_elem(&start, &tid);
	if (!ap)
		return 0;
	/* fill the event on the stack, then send it */
	event.ts = bpf_ktime_get_ns();
	event.pid = id >> 32;
	event.ret = ctx->ret;
	event.flags = ap->flags;
	bpf_get_current_comm(&event.comm, sizeof(event.comm));
	bpf_probe_read_user_str(&event.fname, sizeof(event.fname), ap->fname);
	bpf_perf_event_output(ctx, &events, BPF_F_CURRENT_CPU, &event, sizeof(event));
	bpf_map_delete_elem(&start, &tid);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
