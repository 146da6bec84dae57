/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* netbw: per-device counters shared with the Python side through BTF. */
#ifndef __NETBW_H
#define __NETBW_H

#define IFNAMSIZ 16

/* A device: ifindex is only unique within its network namespace. */
struct dev_key {
	__u32 ifindex;
	__u32 netns;		/* inode number of the namespace (as in /proc/PID/ns/net) */
};

/* Totals since the tool started, per CPU; user space takes differences. */
struct dev_stats {
	__u64 rx_bytes;
	__u64 rx_packets;
	__u64 tx_bytes;
	__u64 tx_packets;
	char name[IFNAMSIZ];	/* the device's name when first seen on this CPU */
};

#endif /* __NETBW_H */
