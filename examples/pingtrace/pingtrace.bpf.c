// SPDX-License-Identifier: GPL-2.0
/*
 * pingtrace: timestamps of ICMP echo packets at each stage of the stack.
 *
 * Every hook parses the packet it sees (CO-RE reads of skb->head plus the
 * network header offset, or skb->data before the stack has set that offset),
 * keeps IPv4 ICMP echo requests and replies that pass the filters and sends
 * one pt_event per stage through the ring buffer; pingtrace.py puts the
 * stages of each (peer, id, seq) together.
 *
 * Each hook comes as tp_btf, raw_tp and classic tracepoint programs (and a
 * kprobe where a kernel may lack the tracepoint); pingtrace.py declares them
 * as Fallback alternatives so the best one this kernel has is loaded.
 */
#include "lbc.h"
#include "pingtrace.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define IPPROTO_ICMP 1
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define LOOPBACK_IFINDEX 1
#define ROUTE_WINDOW_NS (10 * 1000 * 1000ULL)   /* route lookup follows receive within 10 ms */
#define WAKE_WINDOW_NS (1000 * 1000 * 1000ULL)  /* record wake-ups up to 1 s after a delivery */

/* Knobs, set before load. */
const volatile __u32 netns_ino = 0;   /* network namespace inode to follow (0: every one) */
const volatile __u32 peer_addr = 0;   /* only packets to or from this IPv4 address (0: any) */
const volatile bool match_id = false; /* only this ICMP echo id */
const volatile __u16 icmp_id = 0;

/* Set after load: the process whose sendto() calls count (0: any process). */
volatile __u32 send_tgid = 0;
/* When an echo packet was last queued on a socket: wake-ups are recorded near it. */
volatile __u64 last_delivery = 0;
/* Events lost because the ring buffer was full. */
__u64 dropped = 0;

struct pt_pkt {
	__u32 saddr;
	__u32 daddr;
	__u16 id;
	__u16 seq;
	__u8 type;
};

/* The echo packet the stack is receiving on this CPU, for the route lookups that follow. */
struct rx_ctx {
	__u64 ts;
	struct pt_pkt pkt;
	__u32 ifindex;
	__u8 in_done;
	__u8 out_done;
};

LBC_RINGBUF(events, struct pt_event, 256 * 1024);

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct rx_ctx);
	__uint(max_entries, 1);
} rx_ctxs SEC(".maps");

/* tid -> when it was last woken (only near deliveries). */
LBC_LRU_HASH(wakeups, __u32, __u64, 4096);
/* tid -> the echo packet it is reading, until its recv syscall returns. */
struct reader {
	struct pt_pkt pkt;
	__u64 ts;
};
LBC_LRU_HASH(readers, __u32, struct reader, 1024);

static __always_inline bool pkt_wanted(const struct pt_pkt *p)
{
	if (p->type != ICMP_ECHO && p->type != ICMP_ECHOREPLY)
		return false;
	if (peer_addr && p->saddr != peer_addr && p->daddr != peer_addr)
		return false;
	if (match_id && p->id != icmp_id)
		return false;
	return true;
}

static __always_inline void emit(const struct pt_pkt *p, __u8 point, __u32 ifindex, __u32 tid,
				 __u64 ts)
{
	struct pt_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return;
	}
	e->ts = ts;
	e->saddr = p->saddr;
	e->daddr = p->daddr;
	e->ifindex = ifindex;
	e->tid = tid;
	e->id = p->id;
	e->seq = p->seq;
	e->type = p->type;
	e->point = point;
	e->cpu = bpf_get_smp_processor_id();
	bpf_ringbuf_submit(e, 0);
}

/* Read the IPv4 + ICMP echo header at nh (kernel memory). */
static __always_inline bool parse_ip(void *nh, struct pt_pkt *p)
{
	struct iphdr ip;
	struct icmphdr icmp;

	if (bpf_probe_read_kernel(&ip, sizeof(ip), nh))
		return false;
	if (ip.version != 4 || ip.ihl < 5 || ip.protocol != IPPROTO_ICMP)
		return false;
	if (ip.frag_off & bpf_htons(0x1fff))  /* not the first fragment */
		return false;
	if (bpf_probe_read_kernel(&icmp, sizeof(icmp), nh + ip.ihl * 4))
		return false;
	if (icmp.code != 0)
		return false;
	p->saddr = ip.saddr;
	p->daddr = ip.daddr;
	p->type = icmp.type;
	p->id = bpf_ntohs(icmp.un.echo.id);
	p->seq = bpf_ntohs(icmp.un.echo.sequence);
	return pkt_wanted(p);
}

/* The packet of an skb: at the network header offset, or at skb->data on the
 * receive side before __netif_receive_skb_core has set that offset. */
static __always_inline bool parse_skb(struct sk_buff *skb, bool at_data, struct pt_pkt *p)
{
	unsigned char *head;
	__u16 nh;

	if (BPF_CORE_READ(skb, protocol) != bpf_htons(ETH_P_IP))
		return false;
	if (at_data)
		return parse_ip(BPF_CORE_READ(skb, data), p);
	head = BPF_CORE_READ(skb, head);
	nh = BPF_CORE_READ(skb, network_header);
	return parse_ip(head + nh, p);
}

static __always_inline bool netns_ok(struct net *net)
{
	return !netns_ino || BPF_CORE_READ(net, ns.inum) == netns_ino;
}

static __always_inline bool dev_netns_ok(struct net_device *dev)
{
	if (!netns_ino)
		return true;
	if (!dev)
		return false;
	return netns_ok(BPF_CORE_READ(dev, nd_net.net));
}

static __always_inline __u32 tid_now(void)
{
	return (__u32)bpf_get_current_pid_tgid();
}

/* -- transmit: net_dev_queue, net_dev_start_xmit, net_dev_xmit ------------- */

/* dev: the transmitting device when the tracepoint gives it.  After a veth
 * transmit, skb->dev is already the peer's device, in the peer's namespace. */
static __always_inline int on_tx(struct sk_buff *skb, struct net_device *dev, __u8 point)
{
	struct pt_pkt p = {};

	if (!dev)
		dev = BPF_CORE_READ(skb, dev);
	if (!dev_netns_ok(dev) || !parse_skb(skb, false, &p))
		return 0;
	emit(&p, point, BPF_CORE_READ(dev, ifindex), tid_now(), bpf_ktime_get_ns());
	return 0;
}

/* -- receive: netif_rx, napi_gro_receive_entry, netif_receive_skb ---------- */

static __always_inline int on_rx(struct sk_buff *skb, __u8 point)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct pt_pkt p = {};
	struct rx_ctx *c;
	__u32 zero = 0, ifindex;
	__u64 now;

	if (!dev_netns_ok(dev) || !parse_skb(skb, true, &p))
		return 0;
	now = bpf_ktime_get_ns();
	ifindex = BPF_CORE_READ(dev, ifindex);
	emit(&p, point, ifindex, tid_now(), now);
	if (point != PT_RECEIVE_SKB)
		return 0;
	/* The route lookups of this packet run next on this CPU, in this softirq. */
	c = bpf_map_lookup_elem(&rx_ctxs, &zero);
	if (!c)
		return 0;
	c->ts = now;
	c->pkt = p;
	c->ifindex = ifindex;
	c->in_done = 0;
	c->out_done = 0;
	return 0;
}

/* -- routing: fib_table_lookup --------------------------------------------- */

static __always_inline int on_fib(__u32 iif, __u8 proto, __u32 saddr, __u32 daddr)
{
	struct pt_pkt p;
	struct rx_ctx *c;
	__u32 zero = 0;
	__u64 now = bpf_ktime_get_ns();

	c = bpf_map_lookup_elem(&rx_ctxs, &zero);
	if (!c || !c->ts || now - c->ts > ROUTE_WINDOW_NS)
		return 0;
	if (!c->in_done && iif == c->ifindex && saddr == c->pkt.saddr && daddr == c->pkt.daddr) {
		/* The input route of the packet being received: IP receive. */
		c->in_done = 1;
		emit(&c->pkt, PT_ROUTE_IN, iif, tid_now(), now);
		return 0;
	}
	if (c->pkt.type == ICMP_ECHO && !c->out_done && iif == LOOPBACK_IFINDEX &&
	    proto == IPPROTO_ICMP && daddr == c->pkt.saddr) {
		/* An output route back to the requester: the echo reply is on its way. */
		c->out_done = 1;
		p = c->pkt;
		p.type = ICMP_ECHOREPLY;
		p.saddr = c->pkt.daddr;
		p.daddr = c->pkt.saddr;
		emit(&p, PT_ROUTE_OUT, c->ifindex, tid_now(), now);
	}
	return 0;
}

static __always_inline int on_fib_flow(const struct flowi4 *flp)
{
	return on_fib(BPF_CORE_READ(flp, __fl_common.flowic_iif),
		      BPF_CORE_READ(flp, __fl_common.flowic_proto),
		      BPF_CORE_READ(flp, saddr), BPF_CORE_READ(flp, daddr));
}

/* -- socket delivery: sk_data_ready ---------------------------------------- */

static __always_inline int on_data_ready(struct sock *sk)
{
	struct sk_buff *skb;
	struct pt_pkt p = {};
	__u64 now, queue;

	if (BPF_CORE_READ(sk, __sk_common.skc_family) != 2 /* AF_INET */ ||
	    BPF_CORE_READ(sk, sk_protocol) != IPPROTO_ICMP)
		return 0;
	if (!netns_ok(BPF_CORE_READ(sk, __sk_common.skc_net.net)))
		return 0;
	/* The packet just queued is the tail of the receive queue. */
	skb = BPF_CORE_READ(sk, sk_receive_queue.prev);
	queue = (__u64)sk + bpf_core_field_offset(struct sock, sk_receive_queue);
	if (!skb || (__u64)skb == queue || !parse_skb(skb, false, &p))
		return 0;
	now = bpf_ktime_get_ns();
	last_delivery = now;
	emit(&p, PT_SOCK, BPF_CORE_READ(skb, skb_iif), tid_now(), now);
	return 0;
}

/* -- wake-up of the reader: sched_wakeup ------------------------------------ */

static __always_inline int on_wakeup(__u32 tid)
{
	__u64 now = bpf_ktime_get_ns();

	if (now - last_delivery > WAKE_WINDOW_NS)
		return 0;
	bpf_map_update_elem(&wakeups, &tid, &now, BPF_ANY);
	return 0;
}

/* -- the reader copies it out: skb_copy_datagram_iovec ---------------------- */

static __always_inline int on_copy(struct sk_buff *skb)
{
	struct sock *sk = BPF_CORE_READ(skb, sk);
	struct pt_pkt p = {};
	struct reader r = {};
	__u32 tid = tid_now();
	__u64 now, *woken;

	if (!sk || !netns_ok(BPF_CORE_READ(sk, __sk_common.skc_net.net)))
		return 0;
	if (!parse_skb(skb, false, &p))
		return 0;
	now = bpf_ktime_get_ns();
	/* The reader's last wake-up; pingtrace.py keeps it if it followed the delivery. */
	woken = bpf_map_lookup_elem(&wakeups, &tid);
	if (woken && *woken <= now && now - *woken < WAKE_WINDOW_NS)
		emit(&p, PT_WAKE, 0, tid, *woken);
	emit(&p, PT_COPY, BPF_CORE_READ(skb, skb_iif), tid, now);
	r.pkt = p;
	r.ts = now;
	bpf_map_update_elem(&readers, &tid, &r, BPF_ANY);
	return 0;
}

/* -- syscalls: sendto() in, recvfrom()/recvmsg() out ------------------------- */

/* The ICMP socket behind a file descriptor of the current task, or NULL. */
static __always_inline struct sock *icmp_sock_of_fd(unsigned long fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds, *file;
	struct socket *sock;
	struct sock *sk;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return NULL;
	/* A socket file's private data is its struct socket, which points back. */
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_socket) != sock)
		return NULL;
	if (BPF_CORE_READ(sk, __sk_common.skc_family) != 2 /* AF_INET */ ||
	    BPF_CORE_READ(sk, sk_protocol) != IPPROTO_ICMP)
		return NULL;
	return sk;
}

SEC("tracepoint/syscalls/sys_enter_sendto")
int sys_enter_sendto(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct sockaddr_in sin = {};
	struct icmphdr icmp;
	struct pt_pkt p = {};
	struct sock *sk;

	if (send_tgid && tgid != send_tgid)
		return 0;
	if (ctx->args[2] < sizeof(icmp) || ctx->args[5] < sizeof(sin))
		return 0;
	if (bpf_probe_read_user(&icmp, sizeof(icmp), (void *)ctx->args[1]) ||
	    bpf_probe_read_user(&sin, sizeof(sin), (void *)ctx->args[4]))
		return 0;
	if (sin.sin_family != 2 /* AF_INET */ || icmp.type != ICMP_ECHO || icmp.code != 0)
		return 0;
	/* The socket's namespace counts, not the caller's. */
	sk = icmp_sock_of_fd(ctx->args[0]);
	if (!sk || !netns_ok(BPF_CORE_READ(sk, __sk_common.skc_net.net)))
		return 0;
	p.daddr = sin.sin_addr.s_addr;
	p.type = ICMP_ECHO;
	p.id = bpf_ntohs(icmp.un.echo.id);
	p.seq = bpf_ntohs(icmp.un.echo.sequence);
	if (!pkt_wanted(&p))
		return 0;
	emit(&p, PT_SEND, 0, tid_now(), bpf_ktime_get_ns());
	return 0;
}

static __always_inline int on_recv_exit(long ret)
{
	__u32 tid = tid_now();
	struct reader *r;
	__u64 now = bpf_ktime_get_ns();

	r = bpf_map_lookup_elem(&readers, &tid);
	if (!r)
		return 0;
	/* A copy made by read() (not hooked) must not pass for a later recvfrom's. */
	if (ret > 0 && now - r->ts < WAKE_WINDOW_NS)
		emit(&r->pkt, PT_RECV, 0, tid, now);
	bpf_map_delete_elem(&readers, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_recvfrom")
int sys_exit_recvfrom(struct trace_event_raw_sys_exit *ctx)
{
	return on_recv_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_recvmsg")
int sys_exit_recvmsg(struct trace_event_raw_sys_exit *ctx)
{
	return on_recv_exit(ctx->ret);
}

/* -- the programs: one set of alternatives per hook -------------------------- */

/* tp_btf and raw_tp take the same arguments (BPF_CORE_READ works on both);
 * the classic tracepoint gives the skb's address. */
#define SKB_HOOK(TP, RAW, HANDLER, POINT)                                     \
	SEC("tp_btf/" #TP)                                                    \
	int BPF_PROG(btf_##TP, struct sk_buff *skb)                           \
	{                                                                     \
		return HANDLER(skb, POINT);                                   \
	}                                                                     \
	SEC("raw_tp/" #TP)                                                    \
	int BPF_PROG(raw_##TP, struct sk_buff *skb)                           \
	{                                                                     \
		return HANDLER(skb, POINT);                                   \
	}                                                                     \
	SEC("tracepoint/net/" #TP)                                            \
	int tp_##TP(struct trace_event_raw_##RAW *ctx)                        \
	{                                                                     \
		return HANDLER((struct sk_buff *)ctx->skbaddr, POINT);        \
	}

static __always_inline int on_queue(struct sk_buff *skb, __u8 point)
{
	return on_tx(skb, NULL, point);
}

SKB_HOOK(net_dev_queue, net_dev_template, on_queue, PT_DEV_QUEUE)
SKB_HOOK(netif_rx, net_dev_template, on_rx, PT_NETIF_RX)
SKB_HOOK(napi_gro_receive_entry, net_dev_rx_verbose_template, on_rx, PT_GRO)
SKB_HOOK(netif_receive_skb, net_dev_template, on_rx, PT_RECEIVE_SKB)

/* The driver transmit tracepoints also name the device. */
SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(btf_net_dev_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_tx(skb, dev, PT_DEV_START);
}

SEC("raw_tp/net_dev_start_xmit")
int BPF_PROG(raw_net_dev_start_xmit, struct sk_buff *skb, struct net_device *dev)
{
	return on_tx(skb, dev, PT_DEV_START);
}

SEC("tracepoint/net/net_dev_start_xmit")
int tp_net_dev_start_xmit(struct trace_event_raw_net_dev_start_xmit *ctx)
{
	return on_tx((struct sk_buff *)ctx->skbaddr, NULL, PT_DEV_START);
}

SEC("tp_btf/net_dev_xmit")
int BPF_PROG(btf_net_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev)
{
	return on_tx(skb, dev, PT_DEV_XMIT);
}

SEC("raw_tp/net_dev_xmit")
int BPF_PROG(raw_net_dev_xmit, struct sk_buff *skb, int rc, struct net_device *dev)
{
	return on_tx(skb, dev, PT_DEV_XMIT);
}

/* Without the device argument only skb->dev is left, which a veth has changed:
 * this one can only see transmits that stay in their namespace. */
SEC("tracepoint/net/net_dev_xmit")
int tp_net_dev_xmit(struct trace_event_raw_net_dev_xmit *ctx)
{
	return on_tx((struct sk_buff *)ctx->skbaddr, NULL, PT_DEV_XMIT);
}

SEC("tp_btf/fib_table_lookup")
int BPF_PROG(btf_fib_table_lookup, u32 tb_id, const struct flowi4 *flp)
{
	return on_fib_flow(flp);
}

SEC("raw_tp/fib_table_lookup")
int BPF_PROG(raw_fib_table_lookup, u32 tb_id, const struct flowi4 *flp)
{
	return on_fib_flow(flp);
}

SEC("tracepoint/fib/fib_table_lookup")
int tp_fib_table_lookup(struct trace_event_raw_fib_table_lookup *ctx)
{
	__u32 saddr, daddr;

	__builtin_memcpy(&saddr, ctx->src, 4);
	__builtin_memcpy(&daddr, ctx->dst, 4);
	return on_fib(ctx->iif, ctx->proto, saddr, daddr);
}

SEC("tp_btf/sk_data_ready")
int BPF_PROG(btf_sk_data_ready, struct sock *sk)
{
	return on_data_ready(sk);
}

SEC("raw_tp/sk_data_ready")
int BPF_PROG(raw_sk_data_ready, struct sock *sk)
{
	return on_data_ready(sk);
}

/* Before the sk_data_ready tracepoint (6.6), ICMP sockets' readiness callback. */
SEC("kprobe/sock_def_readable")
int BPF_KPROBE(kp_sock_def_readable, struct sock *sk)
{
	return on_data_ready(sk);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(btf_sched_wakeup, struct task_struct *p)
{
	return on_wakeup(BPF_CORE_READ(p, pid));
}

SEC("raw_tp/sched_wakeup")
int BPF_PROG(raw_sched_wakeup, struct task_struct *p)
{
	return on_wakeup(BPF_CORE_READ(p, pid));
}

SEC("tracepoint/sched/sched_wakeup")
int tp_sched_wakeup(struct trace_event_raw_sched_wakeup_template *ctx)
{
	return on_wakeup(ctx->pid);
}

SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(btf_skb_copy_datagram_iovec, struct sk_buff *skb)
{
	return on_copy(skb);
}

SEC("raw_tp/skb_copy_datagram_iovec")
int BPF_PROG(raw_skb_copy_datagram_iovec, struct sk_buff *skb)
{
	return on_copy(skb);
}

SEC("tracepoint/skb/skb_copy_datagram_iovec")
int tp_skb_copy_datagram_iovec(struct trace_event_raw_skb_copy_datagram_iovec *ctx)
{
	return on_copy((struct sk_buff *)ctx->skbaddr);
}
