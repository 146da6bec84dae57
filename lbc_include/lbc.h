/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * lbc.h: the one header an lcc BPF program includes.
 *
 * It pulls in the kernel's types (vmlinux.h, generated from the target
 * kernel's BTF by the compile service), libbpf's helper headers, short
 * integer typedefs and the map macros pyLCC programs use.
 *
 * Event maps (LBC_PERF_OUTPUT, LBC_RINGBUF) record their event type in the
 * map definition as an extra BTF member, `lbc_event`.  libbpf accepts it when
 * the object is opened with relaxed_maps (lcc always does), and lcc reads it
 * back so that Python callbacks receive decoded events with no hand-written
 * mirror of the C struct.
 */
#ifndef __LBC_H
#define __LBC_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#ifndef NULL
#define NULL ((void *)0)
#endif

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s8 s8;
typedef __s16 s16;
typedef __s32 s32;
typedef __s64 s64;

#ifndef TASK_COMM_LEN
#define TASK_COMM_LEN 16
#endif

/* Byte order helpers with the names network code expects. */
#define ntohs(x) bpf_ntohs(x)
#define htons(x) bpf_htons(x)
#define ntohl(x) bpf_ntohl(x)
#define htonl(x) bpf_htonl(x)

/*
 * pyLCC's accessor: _(P) is the value of the lvalue P, read with
 * bpf_probe_read_kernel() (zero if the read fails), e.g. _(task->tgid) or
 * _(info->count).
 *
 * It is not a CO-RE read, on purpose.  pyLCC programs use _() on their own
 * structs (a map value, a struct on the stack) as much as on the kernel's,
 * and a CO-RE relocation against a type the kernel's BTF lacks fails when
 * the program loads; whether P's base type is a kernel type cannot be told
 * apart in C.  A plain read is right for both because lcc compiles every
 * program against the vmlinux.h of the kernel it runs on (the compile
 * service generates it from that kernel's BTF, and the artifact cache keys
 * each object by that BTF): kernel offsets are those of the running kernel.
 * An object copied to another kernel keeps the offsets it was built with:
 * use BPF_CORE_READ() where an object must move between kernels.
 */
#ifndef _
#define _(P)                                                                  \
	({                                                                    \
		typeof(P) __lbc_val;                                          \
		__builtin_memset(&__lbc_val, 0, sizeof(__lbc_val));           \
		bpf_probe_read_kernel(&__lbc_val, sizeof(__lbc_val), &(P));   \
		__lbc_val;                                                    \
	})
#endif

/* pyLCC programs name this (legacy libbpf) type in helper signatures. */
struct bpf_map_def;

#define KERN_STACKID_FLAGS (0 | BPF_F_FAST_STACK_CMP)
#define USER_STACKID_FLAGS (0 | BPF_F_FAST_STACK_CMP | BPF_F_USER_STACK)

#ifndef PERF_MAX_STACK_DEPTH
#define PERF_MAX_STACK_DEPTH 127
#endif

/* Event maps: the event type travels in BTF as the `lbc_event` member. */
#define LBC_PERF_OUTPUT(MAPS, TYPE, PAGES)                                    \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);                  \
		__uint(key_size, sizeof(int));                                \
		__uint(value_size, sizeof(int));                              \
		__type(lbc_event, TYPE);                                      \
		__uint(lbc_pages, PAGES);                                     \
	} MAPS SEC(".maps")

#define LBC_RINGBUF(MAPS, TYPE, BYTES)                                        \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                           \
		__uint(max_entries, BYTES);                                   \
		__type(lbc_event, TYPE);                                      \
	} MAPS SEC(".maps")

/*
 * Ring buffer wakeups.  A plain submit wakes the consumer whenever it has
 * caught up, so a consumer that keeps pace is woken (and the producer pays
 * for the wakeup) once per event.  These wake it only when the unread data
 * crosses a watermark, an eighth of the ring by default:
 *
 *	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
 *	...
 *	lbc_ringbuf_submit(events, e);
 *
 *	lbc_ringbuf_output(events, &ev, sizeof(ev));	(0 or -errno)
 *
 * Events below the watermark are taken by the consumer's next poll timeout
 * (lcc's RingBuffer.poll and PollGroup.poll read the rings when a wait runs
 * out), so the consumer must poll with a timeout: lcc's tools use 100 ms.
 * LBC_RB_WAKEUP(MAPS, WATERMARK, SIZE) is the submit flag itself, for a
 * record of SIZE bytes just reserved.  A crossing two CPUs race over may
 * go unsignalled; the poll timeout covers that too.
 */
#define LBC_RB_WATERMARK(MAPS) (bpf_ringbuf_query(&(MAPS), BPF_RB_RING_SIZE) / 8)
/* Bytes a record of SIZE takes in the ring: an 8-byte header, rounded up to 8. */
#define __LBC_RB_RECORD(SIZE) ((((__u64)(SIZE)) + 15) & ~7ULL)
#define LBC_RB_WAKEUP(MAPS, WATERMARK, SIZE)                                  \
	({                                                                    \
		__u64 __avail = bpf_ringbuf_query(&(MAPS), BPF_RB_AVAIL_DATA); \
		__u64 __mark = (WATERMARK);                                   \
		__avail >= __mark && __avail - __LBC_RB_RECORD(SIZE) < __mark \
			? BPF_RB_FORCE_WAKEUP                                 \
			: BPF_RB_NO_WAKEUP;                                   \
	})
#define lbc_ringbuf_submit(MAPS, E)                                           \
	bpf_ringbuf_submit((E), LBC_RB_WAKEUP(MAPS, LBC_RB_WATERMARK(MAPS), sizeof(*(E))))
#define lbc_ringbuf_output(MAPS, DATA, SIZE)                                  \
	({                                                                    \
		/* queried before the output: the record is not in AVAIL_DATA yet */ \
		__u64 __avail = bpf_ringbuf_query(&(MAPS), BPF_RB_AVAIL_DATA); \
		__u64 __mark = LBC_RB_WATERMARK(MAPS);                        \
		bpf_ringbuf_output(&(MAPS), (DATA), (SIZE),                   \
				   __avail < __mark &&                        \
				   __avail + __LBC_RB_RECORD(SIZE) >= __mark  \
					   ? BPF_RB_FORCE_WAKEUP              \
					   : BPF_RB_NO_WAKEUP);               \
	})

#define __LBC_KV_MAP(MAPS, MAP_TYPE, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)       \
	struct {                                                              \
		__uint(type, MAP_TYPE);                                       \
		__type(key, KEY_TYPE);                                        \
		__type(value, VALUE_TYPE);                                    \
		__uint(max_entries, MAX_ENTRIES);                             \
	} MAPS SEC(".maps")

#define LBC_HASH(MAPS, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)                     \
	__LBC_KV_MAP(MAPS, BPF_MAP_TYPE_HASH, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)
#define LBC_ARRAY(MAPS, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)                    \
	__LBC_KV_MAP(MAPS, BPF_MAP_TYPE_ARRAY, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)
#define LBC_LRU_HASH(MAPS, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)                 \
	__LBC_KV_MAP(MAPS, BPF_MAP_TYPE_LRU_HASH, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)
#define LBC_PERCPU_HASH(MAPS, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)              \
	__LBC_KV_MAP(MAPS, BPF_MAP_TYPE_PERCPU_HASH, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)
#define LBC_PERCPU_ARRAY(MAPS, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)             \
	__LBC_KV_MAP(MAPS, BPF_MAP_TYPE_PERCPU_ARRAY, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)
#define LBC_LRU_PERCPU_HASH(MAPS, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)          \
	__LBC_KV_MAP(MAPS, BPF_MAP_TYPE_LRU_PERCPU_HASH, KEY_TYPE, VALUE_TYPE, MAX_ENTRIES)

/* A stack trace map: stack id -> array of instruction pointers. */
#define LBC_STACK(MAPS, MAX_ENTRIES)                                          \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_STACK_TRACE);                       \
		__uint(key_size, sizeof(u32));                                \
		__uint(value_size, PERF_MAX_STACK_DEPTH * sizeof(u64));       \
		__uint(max_entries, MAX_ENTRIES);                             \
	} MAPS SEC(".maps")

/*
 * log2 histograms, as BCC and libbpf-tools draw them: a slot per power of
 * two.  lcc renders an array or hash map whose value is a u64/u32 count and
 * whose key is the slot as a histogram.
 */
#define LBC_HIST_SLOTS 64

static __always_inline u32 lbc_log2(u32 v)
{
	u32 r, shift;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline u32 lbc_log2l(u64 v)
{
	u32 hi = v >> 32;

	if (hi)
		return lbc_log2(hi) + 32;
	return lbc_log2(v);
}

/* Slot for value v: 0 holds 0 and 1, slot k holds [2^k, 2^(k+1)). */
static __always_inline u32 lbc_hist_slot(u64 v)
{
	u32 slot = lbc_log2l(v);

	return slot < LBC_HIST_SLOTS ? slot : LBC_HIST_SLOTS - 1;
}

/*
 * The value at key in a hash map, created from init first when missing;
 * NULL when the map is full.  BPF_NOEXIST: a value another CPU created
 * between the lookup and the update is kept, not overwritten.
 */
static __always_inline void *lbc_lookup_or_init(void *map, const void *key, const void *init)
{
	void *val;

	val = bpf_map_lookup_elem(map, key);
	if (val)
		return val;
	bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

/* Add 1 to a u64 counter in a key -> count map, creating it if needed. */
static __always_inline void lbc_count(void *map, const void *key)
{
	u64 zero = 0, *val;

	val = lbc_lookup_or_init(map, key, &zero);
	if (val)
		__sync_fetch_and_add(val, 1);
}

/*
 * Is the current task's comm equal to want (TASK_COMM_LEN bytes, NUL-padded,
 * e.g. a `const volatile char targ_comm[TASK_COMM_LEN]` knob)?
 */
static __always_inline bool lbc_current_comm_is(const volatile char *want)
{
	char comm[TASK_COMM_LEN];

	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < TASK_COMM_LEN; i++) {
		if (comm[i] != want[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

/*
 * pyLCC's histograms: an array of u64 counts, one per slot.  LBC_HIST2's
 * slot k counts values in [2^k, 2^(k+1)) (0 and 1, and anything below 1, in
 * slot 0); LBC_HIST10's slot k counts [10^k, 10^(k+1)) (below 10 in slot 0).
 * hist2_push(&map, v) and hist10_push(&map, v) count a value;
 * add_hist(&map, slot, n) and incr_hist(&map, slot) count into a slot.
 * The `lbc_hist` member tells lcc which kind a map is (showHist()).
 */
#define LBC_HIST2(MAPS)                                                       \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__type(key, u32);                                             \
		__type(value, u64);                                           \
		__uint(max_entries, 64);                                      \
		__uint(lbc_hist, 2);                                          \
	} MAPS SEC(".maps")

#define LBC_HIST10(MAPS)                                                      \
	struct {                                                              \
		__uint(type, BPF_MAP_TYPE_ARRAY);                             \
		__type(key, u32);                                             \
		__type(value, u64);                                           \
		__uint(max_entries, 20);                                      \
		__uint(lbc_hist, 10);                                         \
	} MAPS SEC(".maps")

/* floor(log10(v)) for v >= 1; 0 below 10.  At most 19 for a u64. */
static __always_inline u32 lbc_log10(u64 v)
{
	u32 n = 0;

#pragma unroll
	for (int i = 0; i < 19; i++) {
		if (v < 10)
			break;
		v /= 10;
		n++;
	}
	return n;
}

static __always_inline void add_hist(void *map, int slot, int n)
{
	u64 *count = bpf_map_lookup_elem(map, &slot);

	if (count)
		__sync_fetch_and_add(count, n);
}

#define incr_hist(MAP, SLOT) add_hist(MAP, SLOT, 1)

static __always_inline void hist2_push(void *map, long v)
{
	incr_hist(map, v < 1 ? 0 : (int)lbc_log2l(v));
}

static __always_inline void hist10_push(void *map, long v)
{
	incr_hist(map, v < 1 ? 0 : (int)lbc_log10(v));
}

/* Increment the log2 slot of v in a u32 slot -> u64 count map. */
#define lbc_hist_add(MAP, V)                                                  \
	({                                                                    \
		u32 __lbc_slot = lbc_hist_slot(V);                            \
		lbc_count(&(MAP), &__lbc_slot);                               \
	})

#endif /* __LBC_H */
