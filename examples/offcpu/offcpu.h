/* SPDX-License-Identifier: GPL-2.0 */
/* offcpu: types shared by offcpu.bpf.c and offcpu.py (through BTF). */
#ifndef __OFFCPU_H
#define __OFFCPU_H

#define OFFCPU_COMM_LEN 16

/*
 * Task states as ps(1) letters, indexed by the state code the program
 * reports: R (preempted or yielding: waiting for a CPU), S (sleeping), D
 * (uninterruptible), T, t, X, Z, P, I (idle kernel thread).
 */
#define OFFCPU_STATE_LETTERS "RSDTtXZPI"

/* A task that left the CPU, waiting to come back. */
struct offcpu_start {
	__u64 ts;		/* switch-out time, ns */
	__s32 kstack_id;	/* where it blocked, in `kstacks` */
	__u32 state;		/* state code (index into OFFCPU_STATE_LETTERS) */
	__u32 tgid;		/* its process */
	__s32 ustack_id;	/* its user stack, in `ustacks` (-1: not asked for) */
};

/* One off-CPU period longer than the threshold, sent at switch-in. */
struct offcpu_event {
	__u64 ts;		/* switch-in time, ns since boot */
	__u64 delta_ns;		/* time off CPU */
	__u32 pid;		/* process (tgid) */
	__u32 tid;		/* thread */
	__s32 kstack_id;
	__u32 state;
	__s32 ustack_id;	/* -1 without user stacks */
	__u32 pad;
	char comm[OFFCPU_COMM_LEN];
};

/* Totals per blocking stack and state, for the summary at exit. */
struct offcpu_key {
	__s32 kstack_id;
	__u32 state;
	__s32 ustack_id;	/* -1 without user stacks */
	__u32 tgid;		/* the process of the user stack (0 without user stacks) */
};

struct offcpu_total {
	__u64 count;
	__u64 total_ns;
	__u64 max_ns;
};

#endif /* __OFFCPU_H */
