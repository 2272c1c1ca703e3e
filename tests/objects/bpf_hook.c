// SPDX-License-Identifier: MIT
/* LD_PRELOAD shim: libbpf's bpf() calls (syscall(__NR_bpf, ...)) go to a hook the process
 * sets (a Python Emulator, through ctypes); every other syscall() goes to libc's. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/syscall.h>

typedef long (*bpf_hook_t)(long cmd, unsigned long attr, unsigned long size);
static bpf_hook_t hook;

void bpfemu_set_bpf_hook(bpf_hook_t h)
{
	hook = h;
}

long syscall(long nr, ...)
{
	static long (*real)(long, ...);
	long a[6];
	va_list ap;
	int i;

	va_start(ap, nr);
	for (i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_bpf && hook) {
		long r = hook(a[0], (unsigned long)a[1], (unsigned long)a[2]);

		if (r < 0) {
			errno = (int)-r;
			return -1;
		}
		return r;
	}
	if (!real)
		real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
	return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
