/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * <bpf/bpf_core_read.h> as lcc compiles it: the installed libbpf's header,
 * then what newer libbpf releases added, each only when missing (see
 * bpf_helpers.h in this directory for how these headers are used).
 *
 *   bpf_core_cast(ptr, type)         1.4  read-only typed view of a kernel
 *                                         pointer (kfunc bpf_rdonly_cast,
 *                                         kernel 6.2+)
 */
#ifndef __LBC_COMPAT_BPF_CORE_READ_H
#define __LBC_COMPAT_BPF_CORE_READ_H

#include_next <bpf/bpf_core_read.h>

#ifndef bpf_core_cast
extern void *bpf_rdonly_cast(const void *obj, unsigned int btf_id)
	__attribute__((weak)) __attribute__((section(".ksyms")));
/* Direct loads through the result are checked, and CO-RE-relocated, by type. */
#define bpf_core_cast(ptr, type)                                              \
	((typeof(type) *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))
#endif

#endif /* __LBC_COMPAT_BPF_CORE_READ_H */
