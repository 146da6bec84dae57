// SPDX-License-Identifier: GPL-2.0
/* Global variables: .rodata knobs set before load, .bss and .data shared both ways. */
#include "lbc.h"

struct cfg {
	u32 a;
	char name[8];
};

/* .rodata: fixed at load */
const volatile u32 target_pid = 0;
const volatile u64 step = 1;
const volatile char label[8] = "none";

/* .bss: zeroed at load */
u64 hits;
u64 py_value;		/* written by Python */
u64 seen_value;		/* what the program saw of py_value */
char seen_label[8];

/* .data: initialised */
u64 data_val = 42;
u64 data_seen;
struct cfg data_cfg = { .a = 7, .name = "init" };
u32 cfg_a_seen;

SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	hits += step;
	seen_value = py_value;
	data_seen = data_val;
	cfg_a_seen = data_cfg.a;
	/* element by element: each read of the volatile knob stays a load */
	for (int i = 0; i < sizeof(seen_label); i++)
		seen_label[i] = label[i];
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
