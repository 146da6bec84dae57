/* SPDX-License-Identifier: GPL-2.0 */
/* The event of libbpf_opensnoop.bpf.c, shared with its loader as libbpf tools do. */
#ifndef __LIBBPF_OPENSNOOP_H
#define __LIBBPF_OPENSNOOP_H

#define TASK_COMM_LEN	16
#define NAME_MAX	255

struct args_t {
	const char *fname;
	int flags;
};

struct event {
	__u64 ts;
	pid_t pid;
	int ret;
	int flags;
	char comm[TASK_COMM_LEN];
	char fname[NAME_MAX];
};

#endif /* __LIBBPF_OPENSNOOP_H */
