// SPDX-License-Identifier: GPL-2.0
/* A loader built on a `bpftool gen skeleton` of objects.bpf.o: objects__open_and_load(),
 * then the object's maps and global data through the skeleton (skel->bss, skel->data,
 * skel->rodata are libbpf's mmap()s of the .bss/.data/.rodata maps). It prints what it sees
 * in a form that does not depend on ids or on the machine, so that the output under
 * `bpfemu run` as nobody can be compared with the output as root on the live kernel.
 * With an argument PREFIX it pins flows, bss, data and locked at PREFIX<name> before it
 * exits, so that a test can look at what it left. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "objects.skel.h"

struct counter {
	__u32 hits;
	__u32 lock;             /* struct bpf_spin_lock: never copied to or from user space */
	__u64 bytes;
};

static int rc(int ret)
{
	return ret < 0 ? -errno : ret;
}

static void show_map(const char *what, struct bpf_map *map)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len)) {
		printf("map %s: info %d\n", what, -errno);
		return;
	}
	printf("map %s: name %s type %u key %u value %u entries %u flags 0x%x btf %d key_type %u"
	       " value_type %u\n", what, info.name, info.type, info.key_size, info.value_size,
	       info.max_entries, info.map_flags, info.btf_id != 0, info.btf_key_type_id,
	       info.btf_value_type_id);
}

static __u32 prog_id(struct bpf_program *prog)
{
	struct bpf_prog_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
		return 0;
	printf("prog %s: type %u nr_map_ids %u\n", info.name, info.type, info.nr_map_ids);
	return info.id;
}

static __u32 map_id(struct bpf_map *map)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	return bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len) ? 0 : info.id;
}

/* What readlink() of the fd says it is (bpftool and others look for these names). */
static const char *link_kind(int fd)
{
	static const char *kinds[] = { "bpf-map", "bpf-prog", "btf" };
	char path[64], link[256];
	ssize_t n;
	int i;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return "unreadable";
	link[n] = 0;
	for (i = 0; i < 3; i++)
		if (strstr(link, kinds[i]))
			return kinds[i];
	return "other";
}

static int pin(struct bpf_map *map, const char *prefix, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s%s", prefix, name);
	return rc(bpf_map__pin(map, path));
}

int main(int argc, char **argv)
{
	struct objects *skel;
	struct counter c;
	__u32 k, v32, zero = 0, one = 1, two = 2, three = 3;
	__u64 v64, *percpu;
	int ncpus, i, n, ret;

	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	skel = objects__open_and_load();
	if (!skel) {
		printf("open_and_load failed: %d\n", -errno);
		return 1;
	}
	printf("loaded\n");
	printf("fds: map %s prog %s btf %s\n", link_kind(bpf_map__fd(skel->maps.flows)),
	       link_kind(bpf_program__fd(skel->progs.count)), link_kind(bpf_object__btf_fd(skel->obj)));

	show_map("flows", skel->maps.flows);
	show_map("recent", skel->maps.recent);
	show_map("stats", skel->maps.stats);
	show_map("locked", skel->maps.locked);
	show_map("jumps", skel->maps.jumps);
	show_map("inner_one", skel->maps.inner_one);
	show_map("outer", skel->maps.outer);
	show_map("bss", skel->maps.bss);
	show_map("data", skel->maps.data);
	show_map("rodata", skel->maps.rodata);

	/* Global data: libbpf's mmap()s of the mmapable arrays. */
	printf("rodata: sample_rate %u greeting %s\n", skel->rodata->sample_rate,
	       skel->rodata->greeting);
	printf("data: threshold %u\n", skel->data->threshold);
	printf("bss: packets %llu\n", (unsigned long long)skel->bss->packets);
	skel->bss->packets = 42;
	ret = rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.bss), &zero, &v64));
	printf("bss written through mmap, lookup %d packets %llu\n", ret, (unsigned long long)v64);
	v32 = 2000;
	ret = rc(bpf_map_update_elem(bpf_map__fd(skel->maps.data), &zero, &v32, BPF_ANY));
	printf("data updated %d, mmap shows threshold %u\n", ret, skel->data->threshold);
	v32 = 9;
	ret = rc(bpf_map_update_elem(bpf_map__fd(skel->maps.rodata), &zero, &v32, BPF_ANY));
	printf("rodata update %d sample_rate %u\n", ret, skel->rodata->sample_rate);
	ret = rc(bpf_map_freeze(bpf_map__fd(skel->maps.bss)));
	printf("bss freeze while mapped %d\n", ret);

	/* HASH */
	v64 = 100;
	printf("flows update 1: %d\n", rc(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &one,
								&v64, BPF_NOEXIST)));
	v64 = 200;
	printf("flows update 2: %d\n", rc(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &two,
								&v64, BPF_NOEXIST)));
	printf("flows update 2 again: %d\n", rc(bpf_map_update_elem(bpf_map__fd(skel->maps.flows),
								      &two, &v64, BPF_NOEXIST)));
	printf("flows delete 2: %d\n", rc(bpf_map_delete_elem(bpf_map__fd(skel->maps.flows), &two)));
	v64 = 0;
	ret = rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.flows), &one, &v64));
	printf("flows lookup 1: %d %llu\n", ret, (unsigned long long)v64);
	printf("flows lookup 2: %d\n", rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.flows), &two,
							       &v64)));

	/* LRU_HASH: three keys, walked */
	for (v64 = 10; v64 < 13; v64++) {
		v32 = (__u32)v64 * 3;
		bpf_map_update_elem(bpf_map__fd(skel->maps.recent), &v64, &v32, BPF_ANY);
	}
	n = 0;
	for (ret = bpf_map_get_next_key(bpf_map__fd(skel->maps.recent), NULL, &v64); !ret;
	     ret = bpf_map_get_next_key(bpf_map__fd(skel->maps.recent), &v64, &v64))
		n++;
	printf("recent: %d keys, walk ends %d\n", n, -errno);

	/* PERCPU_ARRAY */
	ncpus = libbpf_num_possible_cpus();
	percpu = calloc(ncpus, sizeof(*percpu));
	for (i = 0; i < ncpus; i++)
		percpu[i] = i + 5;
	ret = rc(bpf_map_update_elem(bpf_map__fd(skel->maps.stats), &three, percpu, BPF_ANY));
	memset(percpu, 0, ncpus * sizeof(*percpu));
	ret |= rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.stats), &three, percpu));
	for (v64 = 0, i = 0; i < ncpus; i++)
		v64 += percpu[i] - i;
	printf("stats: %d, sum of (value - cpu) %llu over %s cpus\n", ret,
	       (unsigned long long)v64, v64 == 5ull * ncpus ? "all" : "some");
	free(percpu);

	/* A value with a bpf_spin_lock: BPF_F_LOCK, the lock word never crosses. */
	c.hits = 5; c.lock = 0xdeadbeef; c.bytes = 77;
	ret = rc(bpf_map_update_elem(bpf_map__fd(skel->maps.locked), &one, &c, BPF_F_LOCK));
	memset(&c, 0xff, sizeof(c));
	ret |= rc(bpf_map_lookup_elem_flags(bpf_map__fd(skel->maps.locked), &one, &c, BPF_F_LOCK));
	printf("locked: %d hits %u lock 0x%x bytes %llu\n", ret, c.hits, c.lock,
	       (unsigned long long)c.bytes);
	printf("flows F_LOCK: %d\n", rc(bpf_map_update_elem(bpf_map__fd(skel->maps.flows), &one,
							    &v64, BPF_F_LOCK)));

	/* PROG_ARRAY slot 1 and HASH_OF_MAPS key 2, filled by libbpf at load. */
	ret = rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.jumps), &one, &v32));
	printf("jumps[1]: %d %s\n", ret,
	       v32 == prog_id(skel->progs.tail_target) ? "tail_target" : "other");
	printf("jumps[0]: %d\n", rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.jumps), &zero,
							 &v32)));
	prog_id(skel->progs.count);
	ret = rc(bpf_map_lookup_elem(bpf_map__fd(skel->maps.outer), &two, &v32));
	printf("outer[2]: %d %s\n", ret, v32 == map_id(skel->maps.inner_one) ? "inner_one" : "other");
	k = bpf_map__fd(skel->maps.inner_one);
	printf("outer[3] = inner_one: %d\n", rc(bpf_map_update_elem(bpf_map__fd(skel->maps.outer),
								     &three, &k, BPF_ANY)));
	k = bpf_map__fd(skel->maps.flows);
	printf("outer[0] = flows: %d\n", rc(bpf_map_update_elem(bpf_map__fd(skel->maps.outer),
								 &zero, &k, BPF_ANY)));

	if (argc > 1) {
		printf("pins: %d %d %d %d\n", pin(skel->maps.flows, argv[1], "flows"),
		       pin(skel->maps.bss, argv[1], "bss"), pin(skel->maps.data, argv[1], "data"),
		       pin(skel->maps.locked, argv[1], "locked"));
	}
	objects__destroy(skel);
	return 0;
}
