// SPDX-License-Identifier: GPL-2.0
/*
 * dropwatch: every packet the kernel drops (skb:kfree_skb with a drop reason),
 * with where it was dropped, its 5-tuple and, with -s, its kernel stack.
 *
 * The kfree_skb hook comes as tp_btf, raw_tp and classic tracepoint programs;
 * dropwatch.py declares them as Fallback alternatives.
 */
#include "lbc.h"
#include "dropwatch.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58
#define IPPROTO_UDPLITE 136
#define IPPROTO_SCTP 132

/* Knobs, set before load. */
const volatile __u8 filter_proto = 0;     /* IPPROTO_* (0: any) */
const volatile __u16 filter_port = 0;     /* source or destination port (0: any) */
const volatile __u8 filter_family = 0;    /* AF_INET/AF_INET6 of filter_addr (0: no filter) */
const volatile __u8 filter_addr[16] = {}; /* source or destination address, network order */
const volatile bool want_events = true;   /* send one event per drop */
const volatile bool want_stacks = false;  /* sum drops by kernel stack (-s) */
const volatile __u8 reason_filter = 0;    /* 0: every reason, 1: only those in reasons, 2: all but those */

/* Events lost because the ring buffer was full. */
__u64 dropped = 0;

/*
 * 4 MiB: 40k drops, the smallest ring that kept all of 50,000 UDP drops on
 * loopback in tools_bench's runs (1 and 2 MiB lost some when the flood was
 * fast).  The ring is resident from the start, mapped twice: 8 MiB of RSS.
 * --ring-mib sets another size.
 */
LBC_RINGBUF(events, struct drop_event, 4 * 1024 * 1024);
LBC_STACK(stacks, 4096);
LBC_HASH(stack_counts, struct stack_key, __u64, 4096);
/* The drop reasons reason_filter names (filled before attach). */
LBC_HASH(reasons, __u32, __u8, 1024);

/* The event is built here rather than on the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct drop_event);
	__uint(max_entries, 1);
} scratch SEC(".maps");

static __always_inline bool has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_UDPLITE ||
	       proto == IPPROTO_SCTP;
}

/* Ports (or ICMP type/code) and TCP flags of the transport header at th. */
static __always_inline void parse_l4(struct drop_event *e, void *th)
{
	__u8 b[14];

	if (has_ports(e->l4_proto)) {
		if (bpf_probe_read_kernel(b, e->l4_proto == IPPROTO_TCP ? 14 : 4, th))
			return;
		e->sport = (b[0] << 8) | b[1];
		e->dport = (b[2] << 8) | b[3];
		if (e->l4_proto == IPPROTO_TCP)
			e->tcp_flags = b[13];
	} else if (e->l4_proto == IPPROTO_ICMP || e->l4_proto == IPPROTO_ICMPV6) {
		if (bpf_probe_read_kernel(b, 2, th))
			return;
		e->sport = b[0];  /* type */
		e->dport = b[1];  /* code */
	}
}

static __always_inline void parse_ipv4(struct drop_event *e, void *nh)
{
	struct iphdr ip;

	if (bpf_probe_read_kernel(&ip, sizeof(ip), nh) || ip.version != 4 || ip.ihl < 5)
		return;
	e->family = AF_INET;
	e->l4_proto = ip.protocol;
	__builtin_memcpy(e->saddr, &ip.saddr, 4);
	__builtin_memcpy(e->daddr, &ip.daddr, 4);
	if (!(ip.frag_off & bpf_htons(0x1fff)))  /* only the first fragment has ports */
		parse_l4(e, nh + ip.ihl * 4);
}

static __always_inline void parse_ipv6(struct drop_event *e, void *nh)
{
	struct ipv6hdr ip6;
	__u8 next, ext[2];
	__u32 off = sizeof(ip6);

	if (bpf_probe_read_kernel(&ip6, sizeof(ip6), nh) || ip6.version != 6)
		return;
	e->family = AF_INET6;
	__builtin_memcpy(e->saddr, &ip6.saddr, 16);
	__builtin_memcpy(e->daddr, &ip6.daddr, 16);
	next = ip6.nexthdr;
	/* Step over a few extension headers to reach the transport header. */
#pragma unroll
	for (int i = 0; i < 4; i++) {
		if (next != 0 && next != 43 && next != 60 && next != 44)
			break;
		if (bpf_probe_read_kernel(ext, 2, nh + off))
			return;
		if (next == 44) {  /* fragment header: ports only in the first fragment */
			__u8 frag[4];

			if (bpf_probe_read_kernel(frag, 4, nh + off) || ((frag[2] << 8 | frag[3]) & 0xfff8)) {
				e->l4_proto = ext[0];
				return;
			}
			off += 8;
		} else {
			off += (ext[1] + 1) * 8;
		}
		next = ext[0];
	}
	e->l4_proto = next;
	parse_l4(e, nh + off);
}

static __always_inline bool addr_match(const __u8 *a)
{
	int n = filter_family == AF_INET ? 4 : 16;

#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i < n && a[i] != filter_addr[i])
			return false;
	}
	return true;
}

static __always_inline bool wanted(const struct drop_event *e)
{
	if (filter_proto && e->l4_proto != filter_proto)
		return false;
	if (filter_port && e->sport != filter_port && e->dport != filter_port)
		return false;
	if (filter_family && (e->family != filter_family ||
			      (!addr_match(e->saddr) && !addr_match(e->daddr))))
		return false;
	return true;
}

static __always_inline int on_drop(void *ctx, struct sk_buff *skb, void *location, __u32 reason)
{
	struct drop_event *e;
	struct net_device *dev;
	struct sock *sk;
	unsigned char *head;
	__u16 proto;
	__u32 zero = 0;

	/* Not drops: freed after use, or before any reason was decided. */
	if (reason == bpf_core_enum_value(enum skb_drop_reason, SKB_CONSUMED) ||
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_NOT_DROPPED_YET))
		return 0;
	/* --reason / --exclude-reason (and the normal-close reasons left out by default). */
	if (reason_filter) {
		bool listed = bpf_map_lookup_elem(&reasons, &reason) != NULL;

		if ((reason_filter == 1 && !listed) || (reason_filter == 2 && listed))
			return 0;
	}
	e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));

	/* The packet: network header at skb->head + skb->network_header. */
	proto = bpf_ntohs(BPF_CORE_READ(skb, protocol));
	head = BPF_CORE_READ(skb, head);
	e->l3_proto = proto;
	if (proto == ETH_P_IP)
		parse_ipv4(e, head + BPF_CORE_READ(skb, network_header));
	else if (proto == ETH_P_IPV6)
		parse_ipv6(e, head + BPF_CORE_READ(skb, network_header));
	if (!wanted(e))
		return 0;

	/* Where it was, and who was running. */
	e->ts = bpf_ktime_get_ns();
	e->location = (__u64)location;
	e->reason = reason;
	dev = BPF_CORE_READ(skb, dev);
	sk = BPF_CORE_READ(skb, sk);
	if (dev) {
		e->ifindex = BPF_CORE_READ(dev, ifindex);
		e->netns = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	} else {
		e->ifindex = BPF_CORE_READ(skb, skb_iif);
		if (sk)
			e->netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	}
	if (sk)
		e->sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	/* -s: count it under its kernel stack. */
	e->stack_id = -1;
	if (want_stacks) {
		struct stack_key key = {};

		e->stack_id = bpf_get_stackid(ctx, &stacks, 0);
		key.stack_id = e->stack_id;
		key.reason = reason;
		lbc_count(&stack_counts, &key);
	}

	/* The reader is woken once an eighth of the ring waits; it polls every 100 ms. */
	if (want_events && lbc_ringbuf_output(events, e, sizeof(*e)))
		__sync_fetch_and_add(&dropped, 1);
	return 0;
}

SEC("tp_btf/kfree_skb")
int BPF_PROG(btf_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return on_drop(ctx, skb, location, reason);
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(raw_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	return on_drop(ctx, skb, location, reason);
}

SEC("tracepoint/skb/kfree_skb")
int tp_kfree_skb(struct trace_event_raw_kfree_skb *ctx)
{
	__u32 reason = 2;  /* NOT_SPECIFIED: kernels before drop reasons (5.17) */

	if (bpf_core_field_exists(ctx->reason))
		reason = ctx->reason;
	return on_drop(ctx, (struct sk_buff *)ctx->skbaddr, ctx->location, reason);
}
