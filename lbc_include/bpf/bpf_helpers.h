/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * <bpf/bpf_helpers.h> as lcc compiles it: the installed libbpf's header,
 * then what libbpf releases newer than the installed one added to it, each
 * defined only when that libbpf lacks it.  lcc puts this directory ahead of
 * the system's, so these come right after libbpf's own definitions in
 * whatever order a program includes the headers.
 *
 * Added here (libbpf release that introduced it):
 *   bpf_ksym_exists(sym)                       1.2  is a __weak kfunc or ksym present?
 *   __kptr_untrusted                           1.2  unreferenced kptr map field
 *   bpf_for(i, start, end), bpf_repeat(n),     1.2  open-coded iterator loops
 *   bpf_for_each(type, cur, args...)                (kernel 6.4+)
 *   __percpu_kptr                              1.3  per-CPU kptr map field
 *   __arg_ctx, __arg_nonnull, __arg_nullable,  1.4  global function argument tags
 *   __arg_trusted, __arg_arena
 */
#ifndef __LBC_COMPAT_BPF_HELPERS_H
#define __LBC_COMPAT_BPF_HELPERS_H

#include_next <bpf/bpf_helpers.h>

#ifndef __kptr_untrusted
#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#endif
#ifndef __percpu_kptr
#define __percpu_kptr __attribute__((btf_type_tag("percpu_kptr")))
#endif

/*
 * Whether the kernel has a __weak extern (a kfunc or a __ksym variable):
 * libbpf resolves a missing one to 0, so the verifier can drop the branch
 * that uses it.  A strong extern would fail the load instead, hence the check.
 */
#ifndef bpf_ksym_exists
#define bpf_ksym_exists(sym) ({                                               \
	_Static_assert(!__builtin_constant_p(!!sym),                          \
		       #sym " should be marked as __weak");                   \
	!!sym;                                                                \
})
#endif

/* Tags of global (non-static) function arguments, read by the verifier. */
#ifndef __arg_ctx
#define __arg_ctx __attribute__((btf_decl_tag("arg:ctx")))
#endif
#ifndef __arg_nonnull
#define __arg_nonnull __attribute__((btf_decl_tag("arg:nonnull")))
#endif
#ifndef __arg_nullable
#define __arg_nullable __attribute__((btf_decl_tag("arg:nullable")))
#endif
#ifndef __arg_trusted
#define __arg_trusted __attribute__((btf_decl_tag("arg:trusted")))
#endif
#ifndef __arg_arena
#define __arg_arena __attribute__((btf_decl_tag("arg:arena")))
#endif

/*
 * Open-coded iterators: loops the verifier checks once, whatever their
 * count.  The kfuncs are declared __weak so that a program that does not
 * loop this way loads on kernels without them.
 */
#if !defined(bpf_for) && !defined(bpf_for_each) && !defined(bpf_repeat)
struct bpf_iter_num;
extern int bpf_iter_num_new(struct bpf_iter_num *it, int start, int end)
	__attribute__((weak)) __attribute__((section(".ksyms")));
extern int *bpf_iter_num_next(struct bpf_iter_num *it)
	__attribute__((weak)) __attribute__((section(".ksyms")));
extern void bpf_iter_num_destroy(struct bpf_iter_num *it)
	__attribute__((weak)) __attribute__((section(".ksyms")));

/*
 * The iterator is created once (through the unused ___p pointer's
 * initialiser) and destroyed by the cleanup attribute when the loop is
 * left; naming the destructor in the initialiser makes clang emit its BTF.
 */
#define bpf_for_each(type, cur, args...) for (                                \
	struct bpf_iter_##type ___it __attribute__((aligned(8),               \
		cleanup(bpf_iter_##type##_destroy))),                         \
	*___p __attribute__((unused)) = (                                     \
		bpf_iter_##type##_new(&___it, ##args),                        \
		(void)bpf_iter_##type##_destroy, (void *)0);                  \
	(((cur) = bpf_iter_##type##_next(&___it)));                           \
)

/* for (i = start; i < end; i++), with i bounded for the verifier. */
#define bpf_for(i, start, end) for (                                          \
	struct bpf_iter_num ___it __attribute__((aligned(8),                  \
		cleanup(bpf_iter_num_destroy))),                              \
	*___p __attribute__((unused)) = (                                     \
		bpf_iter_num_new(&___it, (start), (end)),                     \
		(void)bpf_iter_num_destroy, (void *)0);                       \
	({                                                                    \
		int *___t = bpf_iter_num_next(&___it);                        \
		(___t && ((i) = *___t, (i) >= (start) && (i) < (end)));       \
	});                                                                   \
)

/* Run the body n times. */
#define bpf_repeat(N) for (                                                   \
	struct bpf_iter_num ___it __attribute__((aligned(8),                  \
		cleanup(bpf_iter_num_destroy))),                              \
	*___p __attribute__((unused)) = (                                     \
		bpf_iter_num_new(&___it, 0, (N)),                             \
		(void)bpf_iter_num_destroy, (void *)0);                       \
	bpf_iter_num_next(&___it);                                            \
)
#endif /* bpf_for, bpf_for_each, bpf_repeat */

#endif /* __LBC_COMPAT_BPF_HELPERS_H */
