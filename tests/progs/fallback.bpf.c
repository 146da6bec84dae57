// SPDX-License-Identifier: GPL-2.0
/* Alternatives for one job, best first, as libbpf-tools' tcpconnlat has them:
 * fentry, then kprobe, then a tracepoint.  `which` says who ran. */
#include "lbc.h"

const volatile u32 target_pid = 0;
u32 which;
u64 hits;

static __always_inline int hit(u32 who)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	which = who;
	__sync_fetch_and_add(&hits, 1);
	return 0;
}

SEC("fentry/tcp_v4_connect")
int BPF_PROG(fentry_connect, struct sock *sk)
{
	return hit(1);
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(kprobe_connect, struct sock *sk)
{
	return hit(2);
}

SEC("tracepoint/sock/inet_sock_set_state")
int tp_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->newstate != TCP_SYN_SENT)
		return 0;
	return hit(3);
}

/* A second job: the first alternative passes every probe but the verifier
 * rejects it, so lcc has to reopen the object and load the next. */
LBC_HASH(vals, u32, u64, 4);

SEC("tracepoint/syscalls/sys_enter_getppid")
int getppid_bad(void *ctx)
{
	u32 k = 0;
	u64 *v = bpf_map_lookup_elem(&vals, &k);

	hit(4);
	return *v;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int getppid_good(void *ctx)
{
	return hit(5);
}

char LICENSE[] SEC("license") = "GPL";
