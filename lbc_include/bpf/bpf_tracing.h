/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * <bpf/bpf_tracing.h> as lcc compiles it: the installed libbpf's header,
 * then what newer libbpf releases added, each only when missing (see
 * bpf_helpers.h in this directory for how these headers are used).
 *
 *   BPF_UPROBE(name, args...)        1.2  uprobe with typed arguments
 *   BPF_URETPROBE(name, ret)         1.2  uretprobe with the typed return value
 */
#ifndef __LBC_COMPAT_BPF_TRACING_H
#define __LBC_COMPAT_BPF_TRACING_H

#include <bpf/bpf_helpers.h>
#include_next <bpf/bpf_tracing.h>

/* A uprobe's context is a struct pt_regs, as a kprobe's. */
#ifndef BPF_UPROBE
#define BPF_UPROBE(name, args...)  BPF_KPROBE(name, ##args)
#endif
#ifndef BPF_URETPROBE
#define BPF_URETPROBE(name, args...)  BPF_KRETPROBE(name, ##args)
#endif

#endif /* __LBC_COMPAT_BPF_TRACING_H */
