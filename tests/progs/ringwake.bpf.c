// SPDX-License-Identifier: GPL-2.0
/* lbc.h's ring buffer wakeup helpers: one event per getppid() of the test. */
#include "lbc.h"

const volatile u32 target_pid = 0;
const volatile bool use_output = false;	/* lbc_ringbuf_output instead of reserve + submit */

struct wake_event {
	u64 seq;
	u32 pid;
	u32 pad;
};

/* 16 KiB: the watermark (an eighth) is 2 KiB, crossed by the 86th record of 24 bytes. */
LBC_RINGBUF(events, struct wake_event, 16 * 1024);

u64 seq = 0;
u64 dropped = 0;

SEC("tracepoint/syscalls/sys_enter_getppid")
int on_getppid(void *ctx)
{
	u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct wake_event *e, ev = {};

	if (pid != target_pid)
		return 0;
	ev.seq = __sync_fetch_and_add(&seq, 1);
	ev.pid = pid;
	if (use_output) {
		if (lbc_ringbuf_output(events, &ev, sizeof(ev)))
			__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&dropped, 1);
		return 0;
	}
	*e = ev;
	lbc_ringbuf_submit(events, e);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
