/* A thread execs while the group leader waits in bpf(): the exec corner case of the
 * supervisor (test_exec_while_the_leader_waits_in_bpf).
 *
 * Built -no-pie: the attr, key and value are globals at fixed addresses, so the new image
 * has the same attr bytes at the same address, and the map fd (dup2'd to MAP_FD, which
 * clears FD_CLOEXEC) stays open across the exec: a supervisor that serves the leader's
 * pending call after the exec finds the same attr, the same fd and the same open file, and
 * only NOTIF_ID_VALID tells it that the caller is gone.
 *
 *   execrace old READY GO   the leader: 3 updates of key 7 to 0x2222, then a 4th (0x3333)
 *                           while a thread waits for a byte on the FIFO GO and execs "new"
 *   execrace new READY      the new image: writes "r" to the FIFO READY and sleeps
 */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>

#define MAP_FD 100

static uint32_t key = 7;
static uint64_t value = 0x1111;         /* what a new image holds */
static union bpf_attr attr = {
	.map_fd = MAP_FD,
	.key = (uint64_t)(uintptr_t)&key,
	.value = (uint64_t)(uintptr_t)&value,
};
static char *go_arg;
static char *ready_arg;

static long sys_bpf(int cmd, union bpf_attr *a, unsigned size)
{
	return syscall(__NR_bpf, cmd, a, size);
}

static void *execer(void *unused)
{
	char c;
	(void)unused;
	int go = open(go_arg, O_RDONLY | O_CLOEXEC);
	if (go < 0 || read(go, &c, 1) != 1) _exit(3);
	char *argv[] = {"execrace", "new", ready_arg, NULL};
	execv("/proc/self/exe", argv);
	_exit(4);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "new")) {
		int ready = open(argv[2], O_WRONLY);
		if (ready < 0 || write(ready, "r", 1) != 1) return 5;
		sleep(600);
		return 0;
	}
	if (argc != 4 || strcmp(argv[1], "old")) return 2;
	ready_arg = argv[2];
	go_arg = argv[3];
	union bpf_attr c;
	memset(&c, 0, sizeof(c));
	c.map_type = BPF_MAP_TYPE_HASH; c.key_size = 4; c.value_size = 8; c.max_entries = 4;
	int fd = sys_bpf(BPF_MAP_CREATE, &c, sizeof(c));
	if (fd < 0 || dup2(fd, MAP_FD) != MAP_FD) { perror("create"); return 1; }
	close(fd);
	value = 0x2222;
	for (int i = 0; i < 3; i++)
		if (sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32)) { perror("update"); return 1; }
	pthread_t t;
	pthread_create(&t, NULL, execer, NULL);
	value = 0x3333;
	sys_bpf(BPF_MAP_UPDATE_ELEM, &attr, 32);    /* the supervisor holds this one */
	pause();
	return 0;
}
