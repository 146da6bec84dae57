/* SPDX-License-Identifier: GPL-2.0 */
/* The event of events.bpf.c: one of each kind of member the decoder handles. */
#ifndef __LCC_TEST_EVENTS_H
#define __LCC_TEST_EVENTS_H

enum color {
	RED = 1,
	GREEN = 2,
	BLUE = 40,
};

struct point {
	s16 x;
	u16 y;
};

struct inner {
	struct point pt;
	u8 bytes[3];
};

struct event {
	u32 pid;
	char comm[16];
	char tag[8];
	struct inner in;
	u64 arr[3];
	union {
		u32 word;
		u8 b[4];
	} un;
	struct {
		u32 a : 3, b : 5, c : 24;
		s32 sb : 4;
	} bits;
	enum color color;
	s32 neg;
	union {			/* anonymous: its members read as the event's own */
		u32 alias_a;
		u32 alias_b;
	};
	u64 seq;
};

#define BURST 128

#endif
