// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpconnlat: time from a TCP connect() to the connection being established.
 *
 * Three ways to see the same two moments, best first; the Python side keeps
 * the first that this kernel runs (lcc.Fallback):
 *   fentry on tcp_v4_connect/tcp_v6_connect (start) and tcp_rcv_state_process
 *     (the SYN-ACK arrives while the socket is SYN_SENT);
 *   kprobes on the same functions;
 *   the sock:inet_sock_set_state tracepoint: CLOSE -> SYN_SENT runs in the
 *     connecting process (pid and comm come from there), SYN_SENT ->
 *     ESTABLISHED runs in softirq and ends the measurement.
 */
#include "lbc.h"
#include "tcpconnlat.h"

#define AF_INET 2
#define AF_INET6 10

const volatile __u64 targ_min_us = 0;	/* report only connections at least this slow */
const volatile __u32 targ_tgid = 0;	/* 0: every process */

/* Per-connection start: who connected and when. */
struct piddata {
	char comm[TASK_COMM_LEN];
	__u64 ts;
	__u32 tgid;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);		/* struct sock * */
	__type(value, struct piddata);
} start SEC(".maps");

LBC_RINGBUF(events, struct event, 256 * 1024);

__u64 dropped = 0;	/* events lost because the ring buffer was full */

static __always_inline int trace_connect(const void *sk)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 key = (__u64)sk;
	struct piddata piddata = {};

	if (targ_tgid && targ_tgid != tgid)
		return 0;
	bpf_get_current_comm(&piddata.comm, sizeof(piddata.comm));
	piddata.ts = bpf_ktime_get_ns();
	piddata.tgid = tgid;
	bpf_map_update_elem(&start, &key, &piddata, BPF_ANY);
	return 0;
}

/* The connection is established: measure and emit; the addresses come from the caller. */
static __always_inline struct event *established(const void *sk)
{
	__u64 key = (__u64)sk, now = bpf_ktime_get_ns();
	struct piddata *p;
	struct event *e;
	__s64 delta;

	p = bpf_map_lookup_elem(&start, &key);
	if (!p)
		return NULL;
	delta = (__s64)(now - p->ts);
	if (delta < 0 || (__u64)delta / 1000 < targ_min_us)
		goto cleanup;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		goto cleanup;
	}
	__builtin_memcpy(e->comm, p->comm, sizeof(e->comm));
	e->delta_us = delta / 1000;
	e->ts_us = now / 1000;
	e->tgid = p->tgid;
	bpf_map_delete_elem(&start, &key);
	return e;
cleanup:
	bpf_map_delete_elem(&start, &key);
	return NULL;
}

/* fentry and kprobe: read the endpoints from the socket. */
static __always_inline int handle_rcv_state(struct sock *sk)
{
	struct event *e;

	if (BPF_CORE_READ(sk, __sk_common.skc_state) != TCP_SYN_SENT)
		return 0;
	e = established(sk);
	if (!e)
		return 0;
	e->af = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (e->af == AF_INET) {
		BPF_CORE_READ_INTO(e->saddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO(e->daddr, sk, __sk_common.skc_daddr);
	} else {
		BPF_CORE_READ_INTO(e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32);
		BPF_CORE_READ_INTO(e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr32);
	}
	lbc_ringbuf_submit(events, e);	/* wakes the reader at the watermark; it polls every 100 ms */
	return 0;
}

SEC("fentry/tcp_v4_connect")
int BPF_PROG(fentry_tcp_v4_connect, struct sock *sk)
{
	return trace_connect(sk);
}

SEC("fentry/tcp_v6_connect")
int BPF_PROG(fentry_tcp_v6_connect, struct sock *sk)
{
	return trace_connect(sk);
}

SEC("fentry/tcp_rcv_state_process")
int BPF_PROG(fentry_tcp_rcv_state_process, struct sock *sk)
{
	return handle_rcv_state(sk);
}

SEC("kprobe/tcp_v4_connect")
int BPF_KPROBE(kprobe_tcp_v4_connect, struct sock *sk)
{
	return trace_connect(sk);
}

SEC("kprobe/tcp_v6_connect")
int BPF_KPROBE(kprobe_tcp_v6_connect, struct sock *sk)
{
	return trace_connect(sk);
}

SEC("kprobe/tcp_rcv_state_process")
int BPF_KPROBE(kprobe_tcp_rcv_state_process, struct sock *sk)
{
	return handle_rcv_state(sk);
}

/* The tracepoint carries the endpoints itself. */
SEC("tracepoint/sock/inet_sock_set_state")
int tp_inet_sock_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	const void *sk = ctx->skaddr;
	__u64 key = (__u64)sk;
	struct event *e;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	/* connect(): runs in the connecting process. */
	if (ctx->newstate == TCP_SYN_SENT)
		return trace_connect(sk);
	if (ctx->oldstate != TCP_SYN_SENT)
		return 0;
	/* Refused, timed out or aborted: forget it. */
	if (ctx->newstate != TCP_ESTABLISHED) {
		bpf_map_delete_elem(&start, &key);
		return 0;
	}
	e = established(sk);
	if (!e)
		return 0;
	e->af = ctx->family;
	e->lport = ctx->sport;
	e->dport = ctx->dport;
	/* Arrays in the context cannot be loaded through a moved ctx pointer: copy them. */
	if (e->af == AF_INET) {
		bpf_probe_read_kernel(e->saddr, 4, ctx->saddr);
		bpf_probe_read_kernel(e->daddr, 4, ctx->daddr);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, ctx->saddr_v6);
		bpf_probe_read_kernel(e->daddr, 16, ctx->daddr_v6);
	}
	lbc_ringbuf_submit(events, e);	/* wakes the reader at the watermark; it polls every 100 ms */
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
