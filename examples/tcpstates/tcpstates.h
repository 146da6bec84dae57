/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* tcpstates: the event the BPF side sends, and the filter limits. */
#ifndef __TCPSTATES_H
#define __TCPSTATES_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

#define MAX_PORTS 8	/* ports per filter list */

enum event_kind {
	EV_STATE = 1,		/* oldstate -> newstate */
	EV_RETRANSMIT = 2,	/* a segment was retransmitted (detail: error, 0 = sent) */
	EV_RESET_SENT = 3,	/* a RST was sent (detail: enum sk_rst_reason, -1 unknown) */
	EV_RESET_RECV = 4,	/* a RST was received */
};

struct event {
	__u64 skaddr;		/* the socket; 0 for a RST sent without one */
	__u64 ts_ns;		/* CLOCK_MONOTONIC */
	__u64 delta_ns;		/* time spent in oldstate (0: not seen entering it) */
	__u8 saddr[16];		/* local address; IPv4 in the first 4 bytes */
	__u8 daddr[16];		/* remote address */
	char comm[TASK_COMM_LEN];	/* the task on CPU, often not the socket's owner */
	__u32 pid;
	__s32 oldstate;		/* for other kinds: the socket's state */
	__s32 newstate;
	__s32 detail;
	__u16 family;
	__u16 sport;		/* local port, host byte order */
	__u16 dport;		/* remote port, host byte order */
	__u16 kind;		/* enum event_kind */
};

#endif /* __TCPSTATES_H */
