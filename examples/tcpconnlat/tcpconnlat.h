/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* tcpconnlat: the event the BPF side sends for each connection established. */
#ifndef __TCPCONNLAT_H
#define __TCPCONNLAT_H

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

struct event {
	__u8 saddr[16];		/* IPv4 in the first 4 bytes, network order */
	__u8 daddr[16];
	char comm[TASK_COMM_LEN];
	__u64 delta_us;		/* SYN sent -> connection established */
	__u64 ts_us;		/* when it was established (CLOCK_MONOTONIC) */
	__u32 tgid;
	__u16 af;		/* AF_INET or AF_INET6 */
	__u16 lport;		/* host byte order */
	__u16 dport;		/* host byte order */
};

#endif /* __TCPCONNLAT_H */
