// SPDX-License-Identifier: GPL-2.0
/* pyLCC histograms: lcc run draws an LBC_HIST10 map by powers of ten, an LBC_HIST2 map by powers of two. */
#include "lbc.h"
const volatile u32 target_pid = 0;
LBC_HIST10(lat10);
LBC_HIST2(lat2);
SEC("tracepoint/syscalls/sys_enter_getppid")
int on(void *ctx)
{
	if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
		return 0;
	hist10_push(&lat10, 5);
	hist10_push(&lat10, 50);
	hist10_push(&lat10, 500);
	hist2_push(&lat2, 5);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
