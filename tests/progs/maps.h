/* SPDX-License-Identifier: GPL-2.0 */
/* Types shared by maps.bpf.c and the map tests (they reach Python through BTF). */
#ifndef __LCC_TEST_MAPS_H
#define __LCC_TEST_MAPS_H

struct rec {
	u64 count;
	char name[16];
	struct {
		u16 x;
		u8 tag[2];
	} inner;
};

struct pair {
	u32 a;
	u32 b;
};

struct lpm_v4 {
	u32 prefixlen;
	u8 addr[4];
};

/* Slots of the `arr` array: what the program reports back. */
enum arr_slot {
	ARR_IN = 0,		/* written by Python */
	ARR_DOUBLE = 1,		/* 2 * ARR_IN */
	ARR_CALLS = 2,		/* how many times the program ran */
	ARR_PERCPU_SEEN = 3,	/* pc_hash[1] as this CPU saw it */
	ARR_CPU = 4,		/* the CPU the program last ran on */
	ARR_STACKID = 5,	/* bpf_get_stackid() of the last run */
	ARR_LPM = 6,		/* trie value for 10.1.2.3 */
};

#endif
