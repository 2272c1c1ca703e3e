/* bpfc: a C client of libbpf 1.1 (libbpf-dev) for bpfemu's real-client tests.
 *
 * It runs every map type bpfemu emulates through libbpf's low-level API (create, element
 * ops, the get_next_key walk, the four batch ops, obj info, freeze, pin/get, get_fd_by_id)
 * and prints a transcript that is the same on the live kernel and under `bpfemu run`:
 * hash maps use BPF_F_ZERO_SEED so that walk and batch order are the kernel's, map ids
 * are printed as "id#N" (the harness renames them), fd numbers are never printed.
 *
 * usage: bpfc PIN_DIR     (PIN_DIR: a directory on a bpffs, or under `bpfemu run --pin-root`)
 * With CLIENT_PAUSE set it stops once, while its maps are open and pinned, prints
 * "PAUSE <readlink of a map fd>" on stderr and waits for a line on stdin.
 */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ENTRIES 8
#define VALUE_SIZE 8

static int ncpus;
static const char *pin_dir;

static const char *ename(int e)
{
	if (e == 524)
		return "ENOTSUPP";	/* the kernel's internal errno, not in libc's table */
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

/* libbpf 1.x returns a negative errno on failure. */
static void result(int ret)
{
	if (ret < 0)
		printf(" -> %s\n", ename(-ret));
	else
		printf(" -> ok\n");
}

static int is_percpu(enum bpf_map_type t)
{
	return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
	       t == BPF_MAP_TYPE_PERCPU_ARRAY;
}

static int is_array(enum bpf_map_type t)
{
	return t == BPF_MAP_TYPE_ARRAY || t == BPF_MAP_TYPE_PERCPU_ARRAY;
}

/* One value as the user sees it: one 8-byte slot per possible CPU for per-CPU maps. */
static size_t value_len(enum bpf_map_type t)
{
	return is_percpu(t) ? (size_t)ncpus * VALUE_SIZE : VALUE_SIZE;
}

static void fill_value(enum bpf_map_type t, __u64 *v, __u64 base)
{
	int slots = is_percpu(t) ? ncpus : 1;
	for (int i = 0; i < slots; i++)
		v[i] = base + i;
}

static void print_value(enum bpf_map_type t, const __u64 *v)
{
	int slots = is_percpu(t) ? ncpus : 1;
	printf("[");
	for (int i = 0; i < slots; i++)
		printf("%s%llu", i ? " " : "", (unsigned long long)v[i]);
	printf("]");
}

static void print_info(int fd, const char *label)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	int ret = bpf_obj_get_info_by_fd(fd, &info, &len);
	printf("  info(%s)", label);
	if (ret < 0) {
		result(ret);
		return;
	}
	printf(" len=%u type=%u id#%u key=%u value=%u max=%u flags=0x%x name=\"%s\" ifindex=%u"
	       " vmlinux_vt=%u netns=%llu/%llu btf=%u/%u/%u extra=%llu\n",
	       len, info.type, info.id, info.key_size, info.value_size, info.max_entries,
	       info.map_flags, info.name, info.ifindex, info.btf_vmlinux_value_type_id,
	       (unsigned long long)info.netns_dev, (unsigned long long)info.netns_ino,
	       info.btf_id, info.btf_key_type_id, info.btf_value_type_id,
	       (unsigned long long)info.map_extra);
}

static __u32 map_id(int fd)
{
	struct bpf_map_info info;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	return bpf_obj_get_info_by_fd(fd, &info, &len) < 0 ? 0 : info.id;
}

static void update(int fd, enum bpf_map_type t, __u32 key, __u64 base, __u64 flags)
{
	__u64 v[64];

	fill_value(t, v, base);
	printf("  update key=%u value=%llu flags=%llu", key, (unsigned long long)base,
	       (unsigned long long)flags);
	result(bpf_map_update_elem(fd, &key, v, flags));
}

static void lookup(int fd, enum bpf_map_type t, __u32 key)
{
	__u64 v[64];

	memset(v, 0xee, sizeof(v));
	int ret = bpf_map_lookup_elem(fd, &key, v);
	printf("  lookup key=%u", key);
	if (ret < 0) {
		result(ret);
		return;
	}
	printf(" -> ");
	print_value(t, v);
	printf("\n");
}

static void walk(int fd)
{
	__u32 key, next;
	void *prev = NULL;
	int ret;

	printf("  walk:");
	while ((ret = bpf_map_get_next_key(fd, prev, &next)) == 0) {
		printf(" %u", next);
		key = next;
		prev = &key;
	}
	printf(" (end %s)\n", ename(-ret));
}

/* lookup_batch (or lookup_and_delete_batch) over the whole map, `chunk` elements a call. */
static void batch_walk(int fd, enum bpf_map_type t, int and_delete, __u32 chunk)
{
	__u32 keys[MAX_ENTRIES * 2];
	__u64 values[MAX_ENTRIES * 2 * 64];
	__u32 out_batch, in_batch;
	void *in = NULL;
	size_t vlen = value_len(t) / sizeof(__u64);
	DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);

	for (int round = 0; round < MAX_ENTRIES * 2; round++) {
		__u32 count = chunk;
		int ret = and_delete ?
			bpf_map_lookup_and_delete_batch(fd, in, &out_batch, keys, values, &count, &opts) :
			bpf_map_lookup_batch(fd, in, &out_batch, keys, values, &count, &opts);

		printf("  %s count=%u", and_delete ? "lookup_and_delete_batch" : "lookup_batch", count);
		if (ret < 0)
			printf(" %s", ename(-ret));
		for (__u32 i = 0; i < count && i < chunk; i++) {
			printf(" %u=", keys[i]);
			print_value(t, &values[i * vlen]);
		}
		printf("\n");
		if (ret < 0)
			return;
		in_batch = out_batch;
		in = &in_batch;
	}
}

static void batch_update_delete(int fd, enum bpf_map_type t)
{
	__u32 keys[4];
	__u64 values[4 * 64];
	size_t vlen = value_len(t) / sizeof(__u64);
	__u32 count;
	int ret;
	DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, opts);

	for (int i = 0; i < 4; i++) {
		keys[i] = is_array(t) ? (__u32)(4 + i) : (__u32)(10 + i);
		fill_value(t, &values[i * vlen], 1000 + keys[i]);
	}
	count = 4;
	ret = bpf_map_update_batch(fd, keys, values, &count, &opts);
	printf("  update_batch count=%u", count);
	result(ret);

	opts.elem_flags = BPF_NOEXIST;
	count = 4;
	ret = bpf_map_update_batch(fd, keys, values, &count, &opts);
	printf("  update_batch NOEXIST count=%u", count);
	result(ret);
	opts.elem_flags = 0;

	count = 2;
	ret = bpf_map_delete_batch(fd, keys, &count, &opts);
	printf("  delete_batch count=%u", count);
	result(ret);
}

static int map_section(enum bpf_map_type t, const char *name, __u32 flags, int pin)
{
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, copts, .map_flags = flags);
	__u64 v[64];
	__u32 key;
	char path[4096];

	printf("map %s type=%u flags=0x%x\n", name, t, flags);
	int fd = bpf_map_create(t, name, sizeof(__u32), VALUE_SIZE, MAX_ENTRIES, &copts);
	printf("  create");
	result(fd);
	if (fd < 0)
		return -1;
	print_info(fd, "created");

	for (__u32 k = 1; k <= 5; k++)
		update(fd, t, k, 100 * k, BPF_ANY);
	update(fd, t, 1, 111, BPF_NOEXIST);
	update(fd, t, 9, 999, BPF_EXIST);
	update(fd, t, 6, 666, BPF_EXIST);
	update(fd, t, 3, 333, BPF_EXIST);
	update(fd, t, 7, 777, 4 /* BPF_F_LOCK without a spin lock */);
	update(fd, t, 7, 777, 99 /* unknown flags */);
	lookup(fd, t, 3);
	lookup(fd, t, 7);
	lookup(fd, t, MAX_ENTRIES + 1);
	key = 3;
	printf("  lookup_elem_flags key=3 flags=BPF_F_LOCK");
	result(bpf_map_lookup_elem_flags(fd, &key, v, BPF_F_LOCK));

	key = 2;
	printf("  delete key=2");
	result(bpf_map_delete_elem(fd, &key));
	printf("  delete key=2 again");
	result(bpf_map_delete_elem(fd, &key));
	walk(fd);

	key = 4;
	memset(v, 0, sizeof(v));
	int ret = bpf_map_lookup_and_delete_elem(fd, &key, v);
	printf("  lookup_and_delete key=4");
	if (ret < 0) {
		result(ret);
	} else {
		printf(" -> ");
		print_value(t, v);
		printf("\n");
	}
	lookup(fd, t, 4);

	batch_update_delete(fd, t);
	walk(fd);
	batch_walk(fd, t, 0, 3);
	batch_walk(fd, t, 0, 1);	/* a bucket of two elements does not fit: ENOSPC */
	batch_walk(fd, t, 1, 2);
	walk(fd);

	if (pin) {
		snprintf(path, sizeof(path), "%s/%s", pin_dir, name);
		printf("  pin %s", name);
		result(bpf_obj_pin(fd, path));
		printf("  pin %s again", name);
		result(bpf_obj_pin(fd, path));
		int fd2 = bpf_obj_get(path);
		printf("  obj_get %s", name);
		result(fd2);
		if (fd2 >= 0) {
			printf("  same map through the pin: %s\n",
			       map_id(fd2) == map_id(fd) ? "yes" : "no");
			update(fd2, t, 1, 4242, BPF_ANY);
			lookup(fd, t, 1);
			close(fd2);
		}
		int fd3 = bpf_map_get_fd_by_id(map_id(fd));
		printf("  get_fd_by_id");
		result(fd3);
		if (fd3 >= 0) {
			print_info(fd3, "by id");
			close(fd3);
		}
	}

	printf("  freeze");
	result(bpf_map_freeze(fd));
	printf("  freeze again");
	result(bpf_map_freeze(fd));
	update(fd, t, 1, 5, BPF_ANY);
	lookup(fd, t, 1);
	return fd;
}

static const char *accmode(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return ename(errno);
	switch (fl & O_ACCMODE) {
	case O_RDONLY: return "O_RDONLY";
	case O_WRONLY: return "O_WRONLY";
	default: return "O_RDWR";
	}
}

/* What each kind of fd may do: map_flags RDONLY/WRONLY, and read-only or write-only fds
 * of a read-write map from OBJ_GET and GET_FD_BY_ID. */
static void try_fd(const char *label, int fd)
{
	__u32 key = 1, next;
	__u64 v = 0;

	printf("  %s: create/open", label);
	result(fd);
	if (fd < 0)
		return;
	printf("    F_GETFL %s\n", accmode(fd));
	printf("    update");
	result(bpf_map_update_elem(fd, &key, &v, BPF_ANY));
	printf("    lookup");
	result(bpf_map_lookup_elem(fd, &key, &v));
	printf("    get_next_key");
	result(bpf_map_get_next_key(fd, NULL, &next));
	printf("    delete");
	result(bpf_map_delete_elem(fd, &key));
	printf("    freeze");
	result(bpf_map_freeze(fd));
	close(fd);
}

static void access_modes(void)
{
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, rdonly, .map_flags = BPF_F_RDONLY);
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, wronly, .map_flags = BPF_F_WRONLY);
	DECLARE_LIBBPF_OPTS(bpf_obj_get_opts, get_ro, .file_flags = BPF_F_RDONLY);
	DECLARE_LIBBPF_OPTS(bpf_obj_get_opts, get_wo, .file_flags = BPF_F_WRONLY);
	DECLARE_LIBBPF_OPTS(bpf_get_fd_by_id_opts, id_ro, .open_flags = BPF_F_RDONLY);
	DECLARE_LIBBPF_OPTS(bpf_get_fd_by_id_opts, id_wo, .open_flags = BPF_F_WRONLY);
	char path[4096];
	__u32 key = 1;
	__u64 v = 11;

	printf("access modes\n");
	try_fd("map RDONLY", bpf_map_create(BPF_MAP_TYPE_HASH, "c_rdonly", 4, 8, 8, &rdonly));
	try_fd("map WRONLY", bpf_map_create(BPF_MAP_TYPE_HASH, "c_wronly", 4, 8, 8, &wronly));
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "c_modes", 4, 8, 8, NULL);
	printf("  create c_modes");
	result(fd);
	if (fd < 0)
		return;
	printf("  F_GETFL of the creator's fd %s\n", accmode(fd));
	bpf_map_update_elem(fd, &key, &v, BPF_ANY);
	snprintf(path, sizeof(path), "%s/c_modes", pin_dir);
	printf("  pin c_modes");
	result(bpf_obj_pin(fd, path));
	try_fd("obj_get RDONLY", bpf_obj_get_opts(path, &get_ro));
	try_fd("obj_get WRONLY", bpf_obj_get_opts(path, &get_wo));
	try_fd("get_fd_by_id RDONLY", bpf_map_get_fd_by_id_opts(map_id(fd), &id_ro));
	try_fd("get_fd_by_id WRONLY", bpf_map_get_fd_by_id_opts(map_id(fd), &id_wo));
	close(fd);
}

/* One map through several fds and processes: a dup outlives the original fd, a forked
 * child's updates are the parent's, and the last close frees an unpinned map's id. */
static void shared_fds(void)
{
	__u32 key, id;
	__u64 v;

	printf("fds and processes\n");
	int fd = bpf_map_create(BPF_MAP_TYPE_HASH, "c_shared", 4, 8, 8, NULL);
	printf("  create");
	result(fd);
	if (fd < 0)
		return;
	id = map_id(fd);
	int dupfd = dup(fd);
	close(fd);
	key = 1;
	v = 10;
	printf("  update through a dup of the closed fd");
	result(bpf_map_update_elem(dupfd, &key, &v, BPF_ANY));
	printf("  the closed fd: update");
	result(bpf_map_update_elem(fd, &key, &v, BPF_ANY));

	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		key = 2;
		v = 20;
		printf("  child: update key 2");
		result(bpf_map_update_elem(dupfd, &key, &v, BPF_NOEXIST));
		int again = bpf_map_get_fd_by_id(id);
		printf("  child: get_fd_by_id");
		result(again);
		key = 3;
		v = 30;
		printf("  child: update key 3 through it");
		result(bpf_map_update_elem(again, &key, &v, BPF_NOEXIST));
		fflush(stdout);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	printf("  child exited %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	for (key = 1; key <= 3; key++) {
		v = 0;
		printf("  parent: lookup key %u", key);
		int ret = bpf_map_lookup_elem(dupfd, &key, &v);
		if (ret < 0)
			result(ret);
		else
			printf(" -> %llu\n", (unsigned long long)v);
	}
	close(dupfd);
	int gone = bpf_map_get_fd_by_id(id);
	printf("  get_fd_by_id after the last close");
	result(gone);
	if (gone >= 0)
		close(gone);
}

static int run_on_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

/* LRU eviction: the map is full, new keys push out the least recently used. The LRU lists
 * are per CPU in part, so the thread is pinned: to CPU 0 throughout, or (switch_every > 0)
 * to CPUs 0 and 1 in turn, switch_every updates at a time. */
static void lru_eviction(enum bpf_map_type t, const char *name, __u32 flags, int switch_every)
{
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, copts, .map_flags = flags);

	if (switch_every)
		printf("lru eviction %s on cpus 0 and 1 in turns of %d: %s\n", name, switch_every,
		       run_on_cpu(0) == 0 && run_on_cpu(1) == 0 && run_on_cpu(0) == 0 ?
		       "pinned" : "not pinned");
	else
		printf("lru eviction %s on cpu 0: %s\n", name,
		       run_on_cpu(0) == 0 ? "pinned" : "not pinned");
	int fd = bpf_map_create(t, name, sizeof(__u32), VALUE_SIZE, 128, &copts);
	printf("  create");
	result(fd);
	if (fd < 0)
		return;
	int failed = 0;
	for (__u32 k = 0; k < 400; k++) {
		__u64 v[64];
		if (switch_every && k % switch_every == 0)
			run_on_cpu((k / switch_every) % 2);
		fill_value(t, v, k);
		if (bpf_map_update_elem(fd, &k, v, BPF_ANY) < 0)
			failed++;
		if (k % 3 == 0) {
			__u32 hot = k / 2;
			bpf_map_lookup_elem(fd, &hot, v);	/* the syscall lookup sets no ref bit */
		}
	}
	run_on_cpu(0);
	printf("  400 updates, %d failed\n", failed);
	walk(fd);
	close(fd);
}

int main(int argc, char **argv)
{
	static const struct {
		enum bpf_map_type type;
		const char *name;
		__u32 flags;
	} maps[] = {
		{ BPF_MAP_TYPE_HASH, "c_hash", BPF_F_ZERO_SEED },
		{ BPF_MAP_TYPE_PERCPU_HASH, "c_percpu_hash", BPF_F_ZERO_SEED },
		{ BPF_MAP_TYPE_LRU_HASH, "c_lru_hash", BPF_F_ZERO_SEED },
		{ BPF_MAP_TYPE_LRU_PERCPU_HASH, "c_lru_pcpu", BPF_F_ZERO_SEED | BPF_F_NO_COMMON_LRU },
		{ BPF_MAP_TYPE_ARRAY, "c_array", 0 },
		{ BPF_MAP_TYPE_PERCPU_ARRAY, "c_percpu_array", 0 },
	};
	int fds[sizeof(maps) / sizeof(maps[0])];

	if (argc != 2) {
		fprintf(stderr, "usage: %s PIN_DIR\n", argv[0]);
		return 2;
	}
	pin_dir = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	ncpus = libbpf_num_possible_cpus();
	printf("possible cpus: %d\n", ncpus);
	if (ncpus <= 0 || ncpus > 64)
		return 1;

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++)
		fds[i] = map_section(maps[i].type, maps[i].name, maps[i].flags, 1);

	/* Creation errors: the attr checks the kernel makes before allocating. */
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, bad, .map_flags = BPF_F_NO_COMMON_LRU);
	printf("create HASH with NO_COMMON_LRU");
	result(bpf_map_create(BPF_MAP_TYPE_HASH, "bad", 4, 8, 8, &bad));
	printf("create HASH with key_size 0");
	result(bpf_map_create(BPF_MAP_TYPE_HASH, "bad", 0, 8, 8, NULL));
	printf("create ARRAY with key_size 8");
	result(bpf_map_create(BPF_MAP_TYPE_ARRAY, "bad", 8, 8, 8, NULL));
	printf("create HASH with max_entries 0");
	result(bpf_map_create(BPF_MAP_TYPE_HASH, "bad", 4, 8, 0, NULL));
	printf("create with a bad name");
	result(bpf_map_create(BPF_MAP_TYPE_HASH, "bad-name", 4, 8, 8, NULL));
	/* Bad pointers: EFAULT, nothing written. */
	DECLARE_LIBBPF_OPTS(bpf_map_create_opts, zs, .map_flags = BPF_F_ZERO_SEED);
	int pfd = bpf_map_create(BPF_MAP_TYPE_HASH, "c_pointers", 4, 8, 8, &zs);
	__u32 k1 = 1;
	__u64 v1 = 1;
	bpf_map_update_elem(pfd, &k1, &v1, BPF_ANY);
	printf("lookup into a NULL value");
	result(bpf_map_lookup_elem(pfd, &k1, NULL));
	printf("update from an unmapped key");
	result(bpf_map_update_elem(pfd, (void *)8, &v1, BPF_ANY));
	printf("get_next_key into a NULL next key");
	result(bpf_map_get_next_key(pfd, NULL, NULL));
	printf("info into an unmapped buffer");
	__u32 ilen = sizeof(struct bpf_map_info);
	result(bpf_obj_get_info_by_fd(pfd, (void *)8, &ilen));
	printf("pin to an unmapped path");
	result(bpf_obj_pin(pfd, (const char *)8));
	close(pfd);
	printf("obj_get of a missing pin");
	char path[4096];
	snprintf(path, sizeof(path), "%s/missing", pin_dir);
	result(bpf_obj_get(path));

	access_modes();
	shared_fds();
	lru_eviction(BPF_MAP_TYPE_LRU_HASH, "c_lru_evict", BPF_F_ZERO_SEED, 0);
	lru_eviction(BPF_MAP_TYPE_LRU_PERCPU_HASH, "c_lrupc_evict",
		     BPF_F_ZERO_SEED | BPF_F_NO_COMMON_LRU, 0);
	lru_eviction(BPF_MAP_TYPE_LRU_HASH, "c_lru_2cpu", BPF_F_ZERO_SEED, 16);
	lru_eviction(BPF_MAP_TYPE_LRU_HASH, "c_lru_nc_2cpu", BPF_F_ZERO_SEED | BPF_F_NO_COMMON_LRU,
		     16);

	if (getenv("CLIENT_PAUSE")) {
		char link[256] = "", fdpath[64];
		ssize_t n;

		snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fds[0]);
		n = readlink(fdpath, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = 0;
		fprintf(stderr, "PAUSE %s\n", link);
		getchar();
	}
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	printf("done\n");
	return 0;
}
