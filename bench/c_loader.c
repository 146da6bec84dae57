// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * c_loader: the plain C libbpf baseline for runtime_bench.py.
 *
 * It loads the same object lcc loads (opened with relaxed_maps, because
 * lbc.h's event maps carry an extra `lbc_event` BTF member that bpftool's
 * skeleton generator rejects), sets `target_tgid` in .rodata through the
 * object's BTF, attaches every program by its SEC() name and opens libbpf's
 * ring_buffer on the `events` map.
 *
 *   c_loader start OBJ
 *       prints attached_at_ns (CLOCK_MONOTONIC), in_process_ns, hwm_kb
 *   c_loader drain OBJ RING_BYTES EVENTS ROUNDS PER_CALL
 *       ROUNDS times: getppid() until EVENTS events sit in the ring, then
 *       time ring_buffer__consume() (wall clock and thread CPU time) with a
 *       callback that counts and reads each event's seq; prints events,
 *       seconds, cpu_seconds, expected, last_seq
 */
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct bench_event {
	__u64 seq;
	__u64 ts;
	__u32 pid;
	__u32 cpu;
};

static unsigned long long count, last_seq;

static unsigned long long clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static unsigned long long now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

static long vm_hwm_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Find a global of a data section by name through the object's BTF. */
static void *global_var(struct bpf_object *obj, const char *sec, const char *name)
{
	struct btf *btf = bpf_object__btf(obj);
	const struct btf_var_secinfo *vs;
	const struct btf_type *t;
	struct bpf_map *map;
	size_t size;
	const char *data;
	int id, i;

	bpf_object__for_each_map(map, obj) {
		const char *n = bpf_map__name(map);

		if (bpf_map__is_internal(map) && strlen(n) >= strlen(sec) &&
		    !strcmp(n + strlen(n) - strlen(sec), sec))
			break;
	}
	if (!map || !btf)
		return NULL;
	/* libbpf 1.1 returns it const; it is the writable image load() copies */
	data = bpf_map__initial_value(map, &size);
	id = btf__find_by_name_kind(btf, sec, BTF_KIND_DATASEC);
	if (!data || id < 0)
		return NULL;
	t = btf__type_by_id(btf, id);
	vs = btf_var_secinfos(t);
	for (i = 0; i < btf_vlen(t); i++, vs++) {
		const struct btf_type *v = btf__type_by_id(btf, vs->type);

		if (!strcmp(btf__name_by_offset(btf, v->name_off), name))
			return (void *)(data + vs->offset);
	}
	return NULL;
}

static int on_event(void *ctx, void *data, size_t size)
{
	const struct bench_event *e = data;

	last_seq = e->seq;
	count++;
	return 0;
}

static int die(const char *what)
{
	fprintf(stderr, "c_loader: %s: %s\n", what, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	unsigned long long t0 = now_ns(), t1;
	LIBBPF_OPTS(bpf_object_open_opts, opts, .relaxed_maps = true);
	struct bpf_program *prog;
	struct ring_buffer *rb;
	struct bpf_object *obj;
	struct bpf_map *events;
	__u32 *tgid, *per_call;

	if (argc < 3 || (strcmp(argv[1], "start") && (strcmp(argv[1], "drain") || argc < 7))) {
		fprintf(stderr, "usage: c_loader start OBJ | drain OBJ RING_BYTES EVENTS ROUNDS PER_CALL\n");
		return 2;
	}
	obj = bpf_object__open_file(argv[2], &opts);
	if (!obj)
		return die("opening the object");
	tgid = global_var(obj, ".rodata", "target_tgid");
	per_call = global_var(obj, ".rodata", "per_call");
	events = bpf_object__find_map_by_name(obj, "events");
	if (!tgid || !per_call || !events)
		return die("finding target_tgid, per_call and the events map");
	*tgid = getpid();
	if (!strcmp(argv[1], "drain")) {
		*per_call = strtoul(argv[6], NULL, 0);
		if (bpf_map__set_max_entries(events, strtoul(argv[3], NULL, 0)))
			return die("resizing the ring");
	}
	if (bpf_object__load(obj))
		return die("loading");
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__attach(prog))
			return die("attaching");
	}
	rb = ring_buffer__new(bpf_map__fd(events), on_event, NULL, NULL);
	if (!rb)
		return die("opening the ring buffer");
	t1 = now_ns();

	if (!strcmp(argv[1], "start")) {
		printf("attached_at_ns=%llu in_process_ns=%llu hwm_kb=%ld\n", t1, t1 - t0,
		       vm_hwm_kb());
		return 0;
	} else {
		unsigned long long want = strtoull(argv[4], NULL, 0), total = 0, ns = 0, cpu = 0;
		unsigned long rounds = strtoul(argv[5], NULL, 0), calls, r, c;

		calls = (want + *per_call - 1) / *per_call;
		for (r = 0; r < rounds; r++) {
			int n;

			for (c = 0; c < calls; c++)
				syscall(SYS_getppid);
			t0 = now_ns();
			t1 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
			n = ring_buffer__consume(rb);
			cpu += clock_ns(CLOCK_THREAD_CPUTIME_ID) - t1;
			ns += now_ns() - t0;
			if (n < 0)
				return die("consuming");
			total += n;
		}
		printf("events=%llu seconds=%.9f cpu_seconds=%.9f expected=%llu last_seq=%llu\n",
		       count, ns / 1e9, cpu / 1e9, (unsigned long long)calls * *per_call * rounds, last_seq);
	}
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
