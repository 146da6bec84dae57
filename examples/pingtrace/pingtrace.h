/* SPDX-License-Identifier: GPL-2.0 */
/* pingtrace: the event shared by pingtrace.bpf.c and pingtrace.py (through BTF). */
#ifndef __PINGTRACE_H
#define __PINGTRACE_H

/* Where in the stack an ICMP echo packet was seen. */
enum pt_point {
	PT_SEND = 1,      /* sendto() entered with an echo request in its buffer */
	PT_DEV_QUEUE,     /* net_dev_queue: handed to the device layer (qdisc next) */
	PT_DEV_START,     /* net_dev_start_xmit: left the qdisc, driver transmit starts */
	PT_DEV_XMIT,      /* net_dev_xmit: driver transmit returned */
	PT_NETIF_RX,      /* netif_rx: a driver (veth, tunnels) queued it for receive */
	PT_GRO,           /* napi_gro_receive_entry: a NAPI driver received it */
	PT_RECEIVE_SKB,   /* netif_receive_skb: the stack starts processing it */
	PT_ROUTE_IN,      /* fib_table_lookup of its input route (IP receive) */
	PT_ROUTE_OUT,     /* fib_table_lookup of the echo reply's route (ICMP answered) */
	PT_SOCK,          /* sk_data_ready: queued on an ICMP socket */
	PT_WAKE,          /* sched_wakeup of the task that then read it */
	PT_COPY,          /* skb_copy_datagram_iovec: the task copies it out */
	PT_RECV,          /* recvfrom()/recvmsg() returned it */
};

struct pt_event {
	__u64 ts;         /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u32 saddr;      /* IPv4 addresses, network byte order */
	__u32 daddr;
	__u32 ifindex;
	__u32 tid;
	__u16 id;         /* ICMP echo id and sequence, host byte order */
	__u16 seq;
	__u8 type;        /* 8: echo request, 0: echo reply */
	__u8 point;       /* enum pt_point */
	__u16 cpu;
};

#endif /* __PINGTRACE_H */
