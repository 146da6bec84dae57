/* SPDX-License-Identifier: GPL-2.0 */
/* The event of libbpf_execsnoop.bpf.c, shared with its loader as libbpf tools do. */
#ifndef __LIBBPF_EXECSNOOP_H
#define __LIBBPF_EXECSNOOP_H

#define TASK_COMM_LEN	16
#define FILENAME_LEN	64

struct event {
	pid_t pid;
	pid_t ppid;
	uid_t uid;
	int retval;
	char comm[TASK_COMM_LEN];
	char filename[FILENAME_LEN];
};

#endif /* __LIBBPF_EXECSNOOP_H */
