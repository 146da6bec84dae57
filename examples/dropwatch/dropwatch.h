/* SPDX-License-Identifier: GPL-2.0 */
/* dropwatch: the event shared by dropwatch.bpf.c and dropwatch.py (through BTF). */
#ifndef __DROPWATCH_H
#define __DROPWATCH_H

#define DW_TASK_COMM_LEN 16

struct drop_event {
	__u64 ts;            /* bpf_ktime_get_ns() */
	__u64 location;      /* kernel address that dropped the packet */
	__u32 reason;        /* enum skb_drop_reason */
	__s32 stack_id;      /* in the stacks map (-1 without -s or when it failed) */
	__u32 netns;         /* network namespace inode (0: unknown) */
	__u32 ifindex;
	__u32 pid;
	__u16 l3_proto;      /* ETH_P_* in host order (0: unknown) */
	__u8 family;         /* 2: IPv4, 10: IPv6, 0: not IP */
	__u8 l4_proto;       /* IPPROTO_* */
	__u16 sport;         /* host order; ICMP: type and code */
	__u16 dport;
	__u8 tcp_flags;      /* FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 */
	__u8 sk_family;      /* the owning socket's address family (AF_NETLINK...), 0: none */
	__u8 pad[2];
	__u8 saddr[16];      /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];
	char comm[DW_TASK_COMM_LEN];
};

/* Drops summed by kernel stack and reason (-s). */
struct stack_key {
	__s32 stack_id;
	__u32 reason;
};

#endif /* __DROPWATCH_H */
