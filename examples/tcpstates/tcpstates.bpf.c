// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpstates: TCP state transitions with the time spent in the previous
 * state, plus retransmits and resets, filtered in the kernel.
 *
 * Every socket's last transition time is kept in `socks`, traced or not, so
 * that a socket which starts to match later still shows correct times.  Once
 * a socket matches the filters it stays traced until it closes: a client's
 * local port, for instance, is only known after CLOSE -> SYN_SENT.
 *
 * The pid filter (`targ_tgid`) marks the sockets that process connects,
 * listens on or closes (transitions made by its own system calls);
 * connections accepted on a port it listens on are marked when they are
 * created (LISTEN -> SYN_RECV), since that happens in softirq, not in the
 * process.
 */
#include "lbc.h"
#include "tcpstates.h"

#define AF_INET 2
#define AF_INET6 10

/* Filters, set before load; zero/false means "no filter". */
const volatile __u32 targ_tgid = 0;
const volatile __u16 targ_family = 0;		/* AF_INET or AF_INET6 */
const volatile __u16 targ_addr_family = 0;	/* family of targ_addr; 0: no address filter */
const volatile __u8 targ_addr[16] = {};		/* matches the local or the remote address */
const volatile __u16 targ_lports[MAX_PORTS] = {};	/* local ports */
const volatile __u16 targ_rports[MAX_PORTS] = {};	/* remote ports */
const volatile __u16 targ_ports[MAX_PORTS] = {};	/* either side */

struct sockinfo {
	__u64 ts;	/* when the socket entered its current state */
	__u32 traced;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);		/* struct sock * */
	__type(value, struct sockinfo);
} socks SEC(".maps");

/* Local ports that the pid filter's process listens on. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u32);
} listen_ports SEC(".maps");

/*
 * 4 MiB: 40k events, 0.2 s of a loopback connect storm (10 state changes
 * per connect, 20k connects a second), for a reader that is off the CPU for
 * a while or a little slower than the storm.  The reader maps the ring
 * (twice, as every ring buffer reader does): it counts in its RSS from the
 * start.  tools_bench under 20k connects on a quiet machine delivered 100%
 * with 4 MiB and with 8 in every run (2 MiB lost some); on a loaded one 4
 * MiB lost up to 6-12%.  --ring-mib sets another size.
 */
LBC_RINGBUF(events, struct event, 4 * 1024 * 1024);

__u64 dropped = 0;	/* events lost because the ring buffer was full */

/*
 * The retransmit and reset tracepoints changed layout in Linux 6.10; these
 * local views are matched against the running kernel by CO-RE (the ___
 * suffix is dropped when looking up the kernel's type), so one object runs
 * on both sides of the change.
 */
struct trace_event_raw_tcp_retransmit_skb___new {
	const void *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
	int err;
} __attribute__((preserve_access_index));

struct trace_event_raw_tcp_send_reset___new {
	const void *skaddr;
	int state;
	/* CO-RE matches an enum field only with an enum of the same name, or anonymous. */
	enum { RST_REASON_ANY } reason;		/* enum sk_rst_reason */
	__u8 saddr[28];		/* struct sockaddr_in or sockaddr_in6 */
	__u8 daddr[28];
} __attribute__((preserve_access_index));

/* Before 6.10 both used the tcp_event_sk_skb layout. */
struct trace_event_raw_tcp_event_sk_skb___old {
	const void *skaddr;
	int state;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
} __attribute__((preserve_access_index));

/* A connection's two ends, as every tracepoint here reports them. */
struct endpoints {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 family;
	__u16 lport;
	__u16 rport;
};

/* Fill `ep` from a tracepoint's family/ports/address fields (same names everywhere). */
#define FILL_ENDPOINTS(ep, ctx)                                                       \
	({                                                                            \
		(ep)->family = (ctx)->family;                                         \
		(ep)->lport = (ctx)->sport;                                           \
		(ep)->rport = (ctx)->dport;                                           \
		if ((ep)->family == AF_INET) {                                        \
			bpf_probe_read_kernel((ep)->laddr, 4, (ctx)->saddr);          \
			bpf_probe_read_kernel((ep)->raddr, 4, (ctx)->daddr);          \
		} else {                                                              \
			bpf_probe_read_kernel((ep)->laddr, 16, (ctx)->saddr_v6);      \
			bpf_probe_read_kernel((ep)->raddr, 16, (ctx)->daddr_v6);      \
		}                                                                     \
	})

static __always_inline bool port_in(const volatile __u16 *list, __u16 port)
{
	for (int i = 0; i < MAX_PORTS; i++) {
		if (!list[i])
			return false;
		if (list[i] == port)
			return true;
	}
	return false;
}

static __always_inline bool addr_is(const __u8 *addr, __u16 family)
{
	int off = 0, n = 4;

	if (family == targ_addr_family) {
		n = family == AF_INET ? 4 : 16;
	} else if (targ_addr_family == AF_INET && family == AF_INET6) {
		/* An IPv4 filter also matches IPv4-mapped IPv6 (::ffff:a.b.c.d). */
		for (int i = 0; i < 10; i++)
			if (addr[i])
				return false;
		if (addr[10] != 0xff || addr[11] != 0xff)
			return false;
		off = 12;
	} else {
		return false;
	}
	for (int i = 0; i < 16; i++) {
		if (i >= n)
			break;
		if (addr[off + i] != targ_addr[i])
			return false;
	}
	return true;
}

/* The address, port and family filters; the pid filter is the caller's. */
static __always_inline bool match_endpoints(const struct endpoints *ep)
{
	if (targ_family && ep->family != targ_family)
		return false;
	if (targ_addr_family && !addr_is(ep->laddr, ep->family) && !addr_is(ep->raddr, ep->family))
		return false;
	if (targ_lports[0] && !port_in(targ_lports, ep->lport))
		return false;
	if (targ_rports[0] && !port_in(targ_rports, ep->rport))
		return false;
	if (targ_ports[0] && !port_in(targ_ports, ep->lport) && !port_in(targ_ports, ep->rport))
		return false;
	return true;
}

static __always_inline int emit(__u16 kind, __u64 sk, const struct endpoints *ep, int oldstate,
				int newstate, __u64 delta_ns, int detail)
{
	struct event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e->skaddr = sk;
	e->ts_ns = bpf_ktime_get_ns();
	e->delta_ns = delta_ns;
	__builtin_memcpy(e->saddr, ep->laddr, sizeof(e->saddr));
	__builtin_memcpy(e->daddr, ep->raddr, sizeof(e->daddr));
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	e->pid = bpf_get_current_pid_tgid() >> 32;
	e->oldstate = oldstate;
	e->newstate = newstate;
	e->detail = detail;
	e->family = ep->family;
	e->sport = ep->lport;
	e->dport = ep->rport;
	e->kind = kind;
	/* Wake the reader only once an eighth of the ring waits: it polls every 100 ms. */
	lbc_ringbuf_submit(events, e);
	return 0;
}

/*
 * Transitions only a system call of the socket's owner makes (connect,
 * listen, close, shutdown).  Others run in softirq, on behalf of whichever
 * task was on the CPU, so the current pid says nothing about the socket.
 */
static __always_inline bool owner_context(int oldstate, int newstate)
{
	return newstate == TCP_SYN_SENT || newstate == TCP_LISTEN ||
	       newstate == TCP_FIN_WAIT1 || newstate == TCP_LAST_ACK ||
	       (oldstate == TCP_LISTEN && newstate == TCP_CLOSE);
}

SEC("tracepoint/sock/inet_sock_set_state")
int handle_set_state(struct trace_event_raw_inet_sock_set_state *ctx)
{
	__u64 sk = (__u64)ctx->skaddr, now = bpf_ktime_get_ns(), delta = 0;
	int oldstate = ctx->oldstate, newstate = ctx->newstate;
	struct endpoints ep = {};
	struct sockinfo *si, next = {};
	bool traced = false;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	FILL_ENDPOINTS(&ep, ctx);

	/* Time in the previous state, and whether the socket already matched. */
	si = bpf_map_lookup_elem(&socks, &sk);
	if (si) {
		delta = now - si->ts;
		traced = si->traced;
	}
	if (!traced && match_endpoints(&ep)) {
		if (!targ_tgid || (owner_context(oldstate, newstate) &&
				   (bpf_get_current_pid_tgid() >> 32) == targ_tgid))
			traced = true;
		else if (oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV &&
			 bpf_map_lookup_elem(&listen_ports, &ep.lport))
			traced = true;	/* accepted on a listener of the process */
	}

	/* Remember this transition, or forget the socket when it closes. */
	if (newstate == TCP_CLOSE) {
		bpf_map_delete_elem(&socks, &sk);
		if (targ_tgid && traced && oldstate == TCP_LISTEN)
			bpf_map_delete_elem(&listen_ports, &ep.lport);
	} else {
		next.ts = now;
		next.traced = traced;
		bpf_map_update_elem(&socks, &sk, &next, BPF_ANY);
		if (targ_tgid && traced && newstate == TCP_LISTEN) {
			__u32 one = 1;

			bpf_map_update_elem(&listen_ports, &ep.lport, &one, BPF_ANY);
		}
	}
	if (!traced)
		return 0;
	return emit(EV_STATE, sk, &ep, oldstate, newstate, delta, 0);
}

/* Retransmits and resets: traced sockets, or (without a pid filter) matching endpoints. */
static __always_inline int emit_socket_event(__u16 kind, __u64 sk, const struct endpoints *ep,
					     int state, int detail)
{
	struct sockinfo *si = sk ? bpf_map_lookup_elem(&socks, &sk) : NULL;
	__u64 delta = 0;

	if (si)
		delta = bpf_ktime_get_ns() - si->ts;
	if (!(si && si->traced) && (targ_tgid || !match_endpoints(ep)))
		return 0;
	return emit(kind, sk, ep, state, state, delta, detail);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int handle_retransmit(void *ctx)
{
	struct endpoints ep = {};
	int state, err = 0;
	__u64 sk;

	if (bpf_core_type_exists(struct trace_event_raw_tcp_retransmit_skb___new)) {
		struct trace_event_raw_tcp_retransmit_skb___new *c = ctx;

		sk = (__u64)c->skaddr;
		state = c->state;
		if (bpf_core_field_exists(c->err))
			err = c->err;
		FILL_ENDPOINTS(&ep, c);
	} else {
		struct trace_event_raw_tcp_event_sk_skb___old *c = ctx;

		sk = (__u64)c->skaddr;
		state = c->state;
		FILL_ENDPOINTS(&ep, c);
	}
	return emit_socket_event(EV_RETRANSMIT, sk, &ep, state, err);
}

/* A sockaddr_in or sockaddr_in6 as the tcp_send_reset tracepoint stores it. */
static __always_inline void from_sockaddr(const __u8 *sa, __u8 *addr, __u16 *port, __u16 *family)
{
	*family = *(__u16 *)sa;
	*port = bpf_ntohs(*(__u16 *)(sa + 2));
	if (*family == AF_INET)
		__builtin_memcpy(addr, sa + 4, 4);
	else if (*family == AF_INET6)
		__builtin_memcpy(addr, sa + 8, 16);
}

SEC("tracepoint/tcp/tcp_send_reset")
int handle_send_reset(void *ctx)
{
	struct endpoints ep = {};
	int state, reason = -1;
	__u64 sk;

	if (bpf_core_type_exists(struct trace_event_raw_tcp_send_reset___new)) {
		struct trace_event_raw_tcp_send_reset___new *c = ctx;
		__u8 sa[28], da[28];

		sk = (__u64)c->skaddr;
		state = c->state;
		if (bpf_core_field_exists(c->reason))
			reason = c->reason;
		/* saddr is the local end even when no socket exists (taken from the skb). */
		bpf_probe_read_kernel(sa, sizeof(sa), c->saddr);
		bpf_probe_read_kernel(da, sizeof(da), c->daddr);
		from_sockaddr(sa, ep.laddr, &ep.lport, &ep.family);
		from_sockaddr(da, ep.raddr, &ep.rport, &ep.family);
	} else {
		struct trace_event_raw_tcp_event_sk_skb___old *c = ctx;

		sk = (__u64)c->skaddr;
		state = c->state;
		FILL_ENDPOINTS(&ep, c);
	}
	return emit_socket_event(EV_RESET_SENT, sk, &ep, state, reason);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int handle_receive_reset(struct trace_event_raw_tcp_event_sk *ctx)
{
	struct endpoints ep = {};
	__u64 sk = (__u64)ctx->skaddr;
	int state = 0;

	FILL_ENDPOINTS(&ep, ctx);
	/* The tracepoint has no state field: read it from the socket. */
	state = BPF_CORE_READ((struct sock *)sk, __sk_common.skc_state);
	return emit_socket_event(EV_RESET_RECV, sk, &ep, state, 0);
}

char LICENSE[] SEC("license") = "GPL";
