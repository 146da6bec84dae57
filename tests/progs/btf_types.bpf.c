// SPDX-License-Identifier: GPL-2.0
/* Types for the BTF unit tests: every kind the codecs handle, reached
 * through global variables (the object is opened, never loaded). */
#include "lbc.h"

enum color { RED = 1, GREEN = 2, BLUE = 40 };
enum big { BIG_LOW = 1, BIG_HIGH = 0x1234567890ULL };

typedef u32 my_u32;
typedef my_u32 my_u32_again;

struct point {
	s16 x;
	u16 y;
};

struct lcc_node {			/* refers to itself through a pointer */
	struct lcc_node *next;
	int val;
};

struct flat {			/* plain: decoded by one precompiled struct.Struct */
	u8 a;
	u64 b;
	char name[8];
	struct point pts[2];
	s32 grid[2][3];
	my_u32_again t;
	bool flag;
	double d;
	void *ptr;
};

struct odd {			/* bitfields, unions, anonymous members: member by member */
	u32 lo : 4, mid : 12;
	s32 neg : 5;
	union {
		u32 word;
		u8 bytes[4];
	} un;
	union {
		u64 alias_a;
		u32 alias_b;
	};
	struct {
		u16 inner_x;
		struct {
			u8 deep;
		};
	};
	enum color color;
	enum big big;
	u8 in;			/* a Python keyword as a member name */
	unsigned char uc[2];
};

struct flat g_flat;
struct odd g_odd;
struct lcc_node g_node;
my_u32_again g_typedef;
const volatile int knob = 3;
/* .rodata knobs of each integer kind, set before load */
const volatile u8 knob_u8 = 1;
const volatile s16 knob_s16 = -2;
const volatile u64 knob_u64 = 3;
const volatile bool knob_bool = false;
const volatile enum color knob_color = RED;
const volatile my_u32_again knob_typedef = 5;
const volatile char knob_label[8] = "abc";
const volatile struct point knob_point = { .x = 1, .y = 2 };
u64 counter = 7;

SEC("tracepoint/syscalls/sys_enter_getppid")
int uses_types(void *ctx)
{
	g_flat.a = knob;
	g_odd.lo = 1;
	g_node.val = counter;
	g_typedef = 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
