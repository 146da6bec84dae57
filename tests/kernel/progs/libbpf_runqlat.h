/* SPDX-License-Identifier: GPL-2.0 */
/* The histogram of libbpf_runqlat.bpf.c, as libbpf-tools' struct hist. */
#ifndef __LIBBPF_RUNQLAT_H
#define __LIBBPF_RUNQLAT_H

#define TASK_COMM_LEN	16
#define MAX_SLOTS	26

struct hist {
	__u32 slots[MAX_SLOTS];
	char comm[TASK_COMM_LEN];
};

#endif /* __LIBBPF_RUNQLAT_H */
