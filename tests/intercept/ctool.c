/* A small raw-syscall bpf() client for the interception tests and benchmark.
 * Each subcommand prints lines "name value" that the tests compare between the live kernel
 * (as root) and `bpfemu run` (as nobody). No libbpf: just syscall(SYS_bpf, ...). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

static long sys_bpf(int cmd, union bpf_attr *attr, unsigned size)
{
	return syscall(SYS_bpf, cmd, attr, size);
}

static int map_create(int type, int ks, int vs, int n)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = type; a.key_size = ks; a.value_size = vs; a.max_entries = n;
	strcpy(a.map_name, "ctool");
	return sys_bpf(BPF_MAP_CREATE, &a, sizeof(a));
}

static int update(int fd, const void *k, const void *v, uint64_t flags)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uintptr_t)k; a.value = (uintptr_t)v; a.flags = flags;
	return sys_bpf(BPF_MAP_UPDATE_ELEM, &a, 32);
}

static int lookup(int fd, const void *k, void *v)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uintptr_t)k; a.value = (uintptr_t)v;
	return sys_bpf(BPF_MAP_LOOKUP_ELEM, &a, 32);
}

static int count(int fd)
{
	union bpf_attr a;
	uint32_t key = 0, next;
	int n = 0, first = 1;
	for (;;) {
		memset(&a, 0, sizeof(a));
		a.map_fd = fd; a.key = first ? 0 : (uintptr_t)&key; a.next_key = (uintptr_t)&next;
		if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &a, 24))
			return n;
		n++; key = next; first = 0;
	}
}


static int map_id(int fd)
{
	union bpf_attr a;
	struct bpf_map_info info;
	memset(&a, 0, sizeof(a));
	memset(&info, 0, sizeof(info));
	a.info.bpf_fd = fd; a.info.info_len = sizeof(info); a.info.info = (uintptr_t)&info;
	if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a, 16))
		return -errno;
	return info.id;
}

/* Is a map with this id alive? (GET_FD_BY_ID needs no name of ours: ENOENT once freed.) */
static int id_alive(int id)
{
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_id = id;
	int fd = sys_bpf(BPF_MAP_GET_FD_BY_ID, &a, 12);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

#define SHOW(name, expr) do { long _r = (expr); printf("%s %ld %s\n", name, _r, _r < 0 ? strerrorname_np(errno) : "-"); fflush(stdout); } while (0)

static int cmd_identity(void)
{
	uint32_t k = 1; uint64_t v = 7, out = 0;
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, 16);
	int first_id = map_id(fd);
	SHOW("create_is_fd", fd >= 3 ? 0 : -1);
	SHOW("cloexec", fcntl(fd, F_GETFD) & FD_CLOEXEC);
	int d = dup(fd);
	close(fd);
	SHOW("update_via_dup", update(d, &k, &v, BPF_ANY));
	/* the closed number, reused by an ordinary file */
	int reused = open("/dev/null", O_RDONLY);
	SHOW("reused_same_number", reused == fd ? 0 : -1);
	SHOW("update_via_reused_number", update(reused, &k, &v, BPF_ANY));
	close(reused);
	SHOW("update_via_closed", update(fd, &k, &v, BPF_ANY));
	pid_t p = fork();
	if (p == 0) {
		uint32_t k2 = 2;
		_exit(update(d, &k2, &v, BPF_NOEXIST) ? 1 : 0);
	}
	int st;
	waitpid(p, &st, 0);
	SHOW("child_update", WEXITSTATUS(st));
	SHOW("parent_sees_child", count(d));
	/* SCM_RIGHTS to ourselves */
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	char c = 'x';
	struct iovec iov = { &c, 1 };
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &d, sizeof(int));
	sendmsg(sv[0], &m, 0);
	close(d);
	memset(cbuf, 0, sizeof(cbuf));
	recvmsg(sv[1], &m, 0);
	int passed;
	memcpy(&passed, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	SHOW("lookup_via_scm_rights", lookup(passed, &k, &out));
	SHOW("value", (long)out);
	SHOW("id_alive", id_alive(first_id));
	close(passed);
	close(sv[0]); close(sv[1]);
	/* the last fd is gone: the map and its id with it */
	SHOW("id_after_last_close", id_alive(first_id));
	return 0;
}

static int cmd_efault(void)
{
	uint32_t k = 1; uint64_t v = 7;
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, 16);
	char *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	SHOW("update_garbage_key", update(fd, (void *)1, &v, BPF_ANY));
	SHOW("update_garbage_value", update(fd, &k, (void *)0xdead0000, BPF_ANY));
	SHOW("update_prot_none_key", update(fd, none, &v, BPF_ANY));
	SHOW("update", update(fd, &k, &v, BPF_ANY));
	SHOW("lookup_into_readonly", lookup(fd, &k, ro));
	SHOW("lookup_into_prot_none", lookup(fd, &k, none));
	SHOW("lookup_from_readonly_key", lookup(fd, ro, &v));
	SHOW("attr_garbage", sys_bpf(BPF_MAP_LOOKUP_ELEM, (void *)8, 32));
	SHOW("attr_kernel_address", sys_bpf(BPF_MAP_LOOKUP_ELEM, (void *)0xffffffff81000000UL, 32));
	SHOW("map_still_works", lookup(fd, &k, &v));
	return 0;
}

static volatile long ticks;
static void on_alarm(int s) { (void)s; ticks++; }

/* N NOEXIST updates of distinct keys under a periodic timer: each must take effect exactly
 * once. An EINTR means nothing happened (retry); an EEXIST would mean an attempt reported as
 * failed had been applied. */
static int cmd_signals(int n, int usec, int restart)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sa.sa_flags = restart ? SA_RESTART : 0;
	sigaction(SIGALRM, &sa, NULL);
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, n);
	struct itimerval it = { { 0, usec }, { 0, usec } };
	setitimer(ITIMER_REAL, &it, NULL);
	long eintr = 0, eexist = 0, other = 0;
	for (uint32_t k = 0; k < (uint32_t)n; k++) {
		uint64_t v = k;
		for (;;) {
			if (update(fd, &k, &v, BPF_NOEXIST) == 0) break;
			if (errno == EINTR) { eintr++; continue; }
			if (errno == EEXIST) eexist++; else other++;
			break;
		}
	}
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	printf("ticks_seen %d\n", ticks > 0);
	printf("eexist %ld\nother %ld\n", eexist, other);
	printf("elements %d\n", count(fd));
	fprintf(stderr, "eintr %ld ticks %ld\n", eintr, ticks);
	return 0;
}

static int shared_fd;
static void *thread_main(void *arg)
{
	long base = (long)arg;
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t k = base * 1000 + i; uint64_t v = k, out = 0;
		if (update(shared_fd, &k, &v, BPF_NOEXIST) || lookup(shared_fd, &k, &out) || out != v)
			return (void *)1;
	}
	return NULL;
}

static int cmd_threads(int t)
{
	pthread_t th[64];
	shared_fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, t * 1000);
	for (long i = 0; i < t; i++)
		pthread_create(&th[i], NULL, thread_main, (void *)i);
	long bad = 0;
	for (int i = 0; i < t; i++) { void *r; pthread_join(th[i], &r); bad += r != NULL; }
	printf("failed_threads %ld\nelements %d\n", bad, count(shared_fd));
	return 0;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmd_bench(int n)
{
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, n);
	union bpf_attr a;
	uint32_t k; uint64_t v = 1;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uintptr_t)&k; a.value = (uintptr_t)&v;
	double t0 = now();
	for (k = 0; k < (uint32_t)n; k++)
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a, 32)) { perror("update"); return 1; }
	double t1 = now();
	for (k = 0; k < (uint32_t)n; k++)
		if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a, 32)) { perror("lookup"); return 1; }
	double t2 = now();
	printf("update_ns %.0f\nlookup_ns %.0f\n", (t1 - t0) / n * 1e9, (t2 - t1) / n * 1e9);
	return 0;
}

/* fstatfs() of a map fd, of the pin directory and of "/": the filesystem each is on. */
static void show_fstatfs(const char *name, int fd, int flags)
{
	struct statfs s;
	if (fstatfs(fd, &s)) { printf("%s -1 %s\n", name, strerrorname_np(errno)); return; }
	printf("%s type 0x%lx bsize %ld namelen %ld", name, (long)s.f_type, (long)s.f_bsize,
	       (long)s.f_namelen);
	if (flags) printf(" flags 0x%lx", (long)s.f_flags);
	printf("\n");
}

static int cmd_fstatfs(const char *dir)
{
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, 4);
	show_fstatfs("map_fd", fd, 1);
	int d = open(dir, O_RDONLY | O_DIRECTORY);
	show_fstatfs("pin_dir", d, 0);
	char sub[4096];
	snprintf(sub, sizeof(sub), "%s/fstatfs_sub", dir);
	mkdir(sub, 0700);
	int e = open(sub, O_RDONLY | O_DIRECTORY);
	show_fstatfs("pin_subdir", e, 0);
	rmdir(sub);
	show_fstatfs("bad_fd", 999, 0);
	return 0;
}

/* n updates of new keys, nothing else: the last calls of the run are decoded updates. */
static int cmd_updates(int n)
{
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, n);
	union bpf_attr a;
	uint32_t k; uint64_t v = 1;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uintptr_t)&k; a.value = (uintptr_t)&v;
	for (k = 0; k < (uint32_t)n; k++)
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a, 32)) { perror("update"); return 1; }
	return 0;
}

/* n updates of new keys of a PERCPU_HASH map (a value for each of up to 1024 CPUs). */
static int cmd_percpu_updates(int n)
{
	static uint64_t v[1024];
	int fd = map_create(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, n);
	union bpf_attr a;
	uint32_t k;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uintptr_t)&k; a.value = (uintptr_t)v;
	for (k = 0; k < (uint32_t)n; k++)
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a, 32)) { perror("update"); return 1; }
	return 0;
}

/* n updates of one key, nothing else: all but the first replace it (a preallocated map's
 * replace takes this CPU's spare element, so the supervisor reads the caller's CPU). */
static int cmd_replaces(int n)
{
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, 1);
	union bpf_attr a;
	uint32_t k = 7; uint64_t v;
	memset(&a, 0, sizeof(a));
	a.map_fd = fd; a.key = (uintptr_t)&k; a.value = (uintptr_t)&v;
	for (v = 0; v < (uint64_t)n; v++)
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a, 32)) { perror("update"); return 1; }
	return 0;
}

/* n updates of new keys, n deletes of them, n updates again: each round one attr, so all but
 * the first two calls of a round are served decoded. A line for each call that fails, and
 * the map's element count after each round. */
static int cmd_churn(int n)
{
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, n);
	static const char *name[] = {"update", "delete", "update"};
	static const int cmd[] = {BPF_MAP_UPDATE_ELEM, BPF_MAP_DELETE_ELEM, BPF_MAP_UPDATE_ELEM};
	union bpf_attr a;
	uint32_t k; uint64_t v;
	for (int r = 0; r < 3; r++) {
		int upd = cmd[r] == BPF_MAP_UPDATE_ELEM;
		memset(&a, 0, sizeof(a));
		a.map_fd = fd; a.key = (uintptr_t)&k;
		if (upd) a.value = (uintptr_t)&v;
		for (k = 0; k < (uint32_t)n; k++) {
			v = 1000 * r + k;
			if (sys_bpf(cmd[r], &a, upd ? 32 : 16))
				printf("%s %u -1 %s\n", name[r], k, strerrorname_np(errno));
		}
		printf("count %d\n", count(fd));
	}
	return 0;
}

/* The same attr object sent again and again (as a loop does, so the supervisor serves it
 * decoded), while what it names changes underneath: the fd number closed and reused by
 * another map, by a read-only fd of the same map and by an ordinary file (each while a dup
 * keeps the old file open), the map frozen, the buffers made unreadable or unwritable. */
static union bpf_attr rep;

static long again(int cmd, int times)
{
	long r = 0;
	for (int i = 0; i < times; i++)
		r = sys_bpf(cmd, &rep, 32);
	return r;
}

static int cmd_decoded(void)
{
	uint32_t k = 1; uint64_t v = 7, out = 0;
	int fd = map_create(BPF_MAP_TYPE_HASH, 4, 8, 16);
	int id = map_id(fd);
	memset(&rep, 0, sizeof(rep));
	rep.map_fd = fd; rep.key = (uintptr_t)&k; rep.value = (uintptr_t)&v;
	SHOW("update", again(BPF_MAP_UPDATE_ELEM, 4));
	rep.value = (uintptr_t)&out;
	SHOW("lookup", again(BPF_MAP_LOOKUP_ELEM, 4));
	SHOW("value", (long)out);
	k = 2; v = 8;
	rep.value = (uintptr_t)&v;
	SHOW("update_other_key", again(BPF_MAP_UPDATE_ELEM, 1));
	SHOW("count", count(fd));
	/* the number reused by another map while a dup keeps the first one open */
	int keep = dup(fd);
	close(fd);
	int fd2 = map_create(BPF_MAP_TYPE_HASH, 4, 8, 16);
	SHOW("reused_by_map", fd2 == fd ? 0 : -1);
	SHOW("update_reused", again(BPF_MAP_UPDATE_ELEM, 3));
	SHOW("count_new", count(fd2));
	SHOW("count_old", count(keep));
	close(fd2);
	/* the number reused by an ordinary file */
	int null = open("/dev/null", O_RDONLY);
	SHOW("reused_by_file", null == fd ? 0 : -1);
	SHOW("update_file", again(BPF_MAP_UPDATE_ELEM, 3));
	close(null);
	SHOW("update_closed", again(BPF_MAP_UPDATE_ELEM, 3));
	/* the number reused by a read-only fd of the first map */
	union bpf_attr g;
	memset(&g, 0, sizeof(g));
	g.map_id = id; g.open_flags = BPF_F_RDONLY;
	int ro_fd = sys_bpf(BPF_MAP_GET_FD_BY_ID, &g, 12);
	SHOW("reused_read_only", ro_fd == fd ? 0 : -1);
	SHOW("update_read_only", again(BPF_MAP_UPDATE_ELEM, 3));
	rep.value = (uintptr_t)&out;
	SHOW("lookup_read_only", again(BPF_MAP_LOOKUP_ELEM, 3));
	close(ro_fd);
	/* back to a writable fd at that number; then frozen */
	int w = dup2(keep, fd);
	SHOW("dup2", w == fd ? 0 : -1);
	rep.value = (uintptr_t)&v;
	SHOW("update_again", again(BPF_MAP_UPDATE_ELEM, 3));
	union bpf_attr fz;
	memset(&fz, 0, sizeof(fz));
	fz.map_fd = keep;
	SHOW("freeze", sys_bpf(BPF_MAP_FREEZE, &fz, 4));
	SHOW("update_frozen", again(BPF_MAP_UPDATE_ELEM, 3));
	rep.value = (uintptr_t)&out;
	SHOW("lookup_frozen", again(BPF_MAP_LOOKUP_ELEM, 3));
	/* buffers that stop being readable or writable */
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	rep.value = (uintptr_t)page;
	SHOW("lookup_page", again(BPF_MAP_LOOKUP_ELEM, 3));
	mprotect(page, 4096, PROT_READ);
	SHOW("lookup_into_readonly", again(BPF_MAP_LOOKUP_ELEM, 3));
	rep.key = (uintptr_t)page;
	SHOW("lookup_key_zero", again(BPF_MAP_LOOKUP_ELEM, 3));
	mprotect(page, 4096, PROT_NONE);
	SHOW("lookup_key_prot_none", again(BPF_MAP_LOOKUP_ELEM, 3));
	rep.key = (uintptr_t)&k; rep.value = (uintptr_t)&out;
	SHOW("lookup_ok", again(BPF_MAP_LOOKUP_ELEM, 3));
	SHOW("value", (long)out);
	rep.value = (uintptr_t)page;
	SHOW("lookup_into_prot_none", again(BPF_MAP_LOOKUP_ELEM, 3));
	/* delete and get_next_key through one attr, too */
	int fd3 = map_create(BPF_MAP_TYPE_HASH, 4, 8, 16);
	rep.map_fd = fd3; rep.key = (uintptr_t)&k; rep.value = (uintptr_t)&v; k = 5;
	SHOW("update_fd3", again(BPF_MAP_UPDATE_ELEM, 3));
	uint32_t next = 0;
	rep.key = 0; rep.next_key = (uintptr_t)&next;
	SHOW("next_key", again(BPF_MAP_GET_NEXT_KEY, 3));
	rep.key = (uintptr_t)&k;
	SHOW("next", (long)next);
	rep.next_key = 0;
	SHOW("delete", again(BPF_MAP_DELETE_ELEM, 1));
	SHOW("delete_gone", again(BPF_MAP_DELETE_ELEM, 3));
	SHOW("id_alive", id_alive(id));
	close(fd); close(keep);
	SHOW("id_after_last_close", id_alive(id));
	return 0;
}

/* One bpf() call after a pause (the supervisor-killed test). */
static int cmd_late(int secs)
{
	printf("started\n");
	fflush(stdout);
	sleep(secs);
	SHOW("late_create", map_create(BPF_MAP_TYPE_HASH, 4, 8, 4));
	return 0;
}

/* A call that blocks in the supervisor's hands long enough to be killed. */
static int cmd_create(void)
{
	SHOW("create", map_create(BPF_MAP_TYPE_HASH, 4, 8, 4) >= 0 ? 0 : -1);
	return 0;
}

/* LRU eviction depends on the CPU a call runs on: fill an LRU map past its size, the first
 * half from CPU 0, the second from CPU 1, and print which keys survived. */
static void run_on(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static int cmd_lru(int flags, int n)
{
	run_on(0);
	union bpf_attr a;
	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_LRU_HASH; a.key_size = 4; a.value_size = 8;
	a.max_entries = 32; a.map_flags = flags;
	int fd = sys_bpf(BPF_MAP_CREATE, &a, sizeof(a));
	if (fd < 0) { perror("create"); return 1; }
	for (uint32_t k = 0; k < (uint32_t)n; k++) {
		uint64_t v = k;
		if (k == (uint32_t)n / 2)
			run_on(1);              /* the second half from CPU 1 */
		if (update(fd, &k, &v, BPF_ANY)) { perror("update"); return 1; }
	}
	uint64_t v;
	printf("cpu %d survivors", sched_getcpu());
	for (uint32_t k = 0; k < (uint32_t)n; k++)
		if (lookup(fd, &k, &v) == 0)
			printf(" %u", k);
	printf("\n");
	return 0;
}

/* bpf() through the other system call ABIs of x86_64: i386 (int $0x80, number 357, 32-bit
 * pointers: the attr lives below 4 GiB) and x32 (number 0x40000000 | 321). */
static int cmd_abis(void)
{
	union bpf_attr *a = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	memset(a, 0, sizeof(*a));
	a->map_type = BPF_MAP_TYPE_ARRAY; a->key_size = 4; a->value_size = 4; a->max_entries = 1;
	long r;
	__asm__ volatile ("int $0x80" : "=a"(r) : "a"(357), "b"(BPF_MAP_CREATE), "c"(a), "d"(72) : "memory");
	printf("i386 %s\n", r >= 0 ? "fd" : strerrorname_np(-r));
	r = syscall(0x40000000 | 321, BPF_MAP_CREATE, a, 72);
	printf("x32 %s\n", r >= 0 ? "fd" : strerrorname_np(errno));
	return 0;
}

/* Privilege check: the effective uid, then a map create. */
static int cmd_euid(void)
{
	printf("euid %d\n", (int)geteuid());
	SHOW("create", map_create(BPF_MAP_TYPE_HASH, 4, 8, 4) >= 0 ? 0 : -1);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) return 2;
	if (!strcmp(argv[1], "identity")) return cmd_identity();
	if (!strcmp(argv[1], "efault")) return cmd_efault();
	if (!strcmp(argv[1], "signals")) return cmd_signals(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (!strcmp(argv[1], "threads")) return cmd_threads(atoi(argv[2]));
	if (!strcmp(argv[1], "bench")) return cmd_bench(atoi(argv[2]));
	if (!strcmp(argv[1], "updates")) return cmd_updates(atoi(argv[2]));
	if (!strcmp(argv[1], "replaces")) return cmd_replaces(atoi(argv[2]));
	if (!strcmp(argv[1], "percpu_updates")) return cmd_percpu_updates(atoi(argv[2]));
	if (!strcmp(argv[1], "churn")) return cmd_churn(atoi(argv[2]));
	if (!strcmp(argv[1], "fstatfs")) return cmd_fstatfs(argv[2]);
	if (!strcmp(argv[1], "decoded")) return cmd_decoded();
	if (!strcmp(argv[1], "late")) return cmd_late(atoi(argv[2]));
	if (!strcmp(argv[1], "create")) return cmd_create();
	if (!strcmp(argv[1], "euid")) return cmd_euid();
	if (!strcmp(argv[1], "abis")) return cmd_abis();
	if (!strcmp(argv[1], "lru")) return cmd_lru(atoi(argv[2]), atoi(argv[3]));
	return 2;
}
