/* SPDX-License-Identifier: GPL-2.0 */
/* syslat: types shared by syslat.bpf.c and syslat.py (through BTF). */
#ifndef __SYSLAT_H
#define __SYSLAT_H

/* Syscall numbers the filter table covers (x86_64 and arm64 stay below 512). */
#define SYSLAT_MAX_SYSCALLS 512

/* A syscall in flight on one thread. */
struct syslat_start {
	__u64 ts;	/* sys_enter time, ns */
	__u32 nr;	/* syscall number */
	__u32 pad;
};

/* Histogram key: one log2 histogram per syscall. */
struct syslat_hist_key {
	__u32 nr;
	__u32 slot;
};

/* Totals per syscall, for the average and the maximum. */
struct syslat_stat {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
	__u64 errors;	/* calls that returned an error (-4095..-1) */
};

/* Error counts: one per syscall and errno. */
struct syslat_errno_key {
	__u32 nr;
	__u32 err;	/* errno, positive */
};

#endif /* __SYSLAT_H */
