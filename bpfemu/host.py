"""HostKernel: the live kernel's bpf() through ctypes, with the Emulator's methods."""
import ctypes
import errno as _errno
import os

from .uapi.consts import BpfCmd as _C

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "armv7l": 386,
           "s390x": 351, "ppc64le": 361}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_sched_getcpu = _libc.sched_getcpu
_sched_getcpu.restype = ctypes.c_int

# Commands whose result is a new fd (bpf_map_new_fd, bpf_prog_new_fd, ...): close_all() closes
# the ones still open.
_FD_CMDS = frozenset(int(getattr(_C, n)) for n in (
    "BPF_MAP_CREATE", "BPF_OBJ_GET", "BPF_MAP_GET_FD_BY_ID", "BPF_PROG_LOAD",
    "BPF_PROG_GET_FD_BY_ID", "BPF_BTF_LOAD", "BPF_BTF_GET_FD_BY_ID", "BPF_RAW_TRACEPOINT_OPEN",
    "BPF_LINK_CREATE", "BPF_LINK_GET_FD_BY_ID", "BPF_ITER_CREATE", "BPF_TOKEN_CREATE")
    if hasattr(_C, n))
_EINVAL, _EFAULT, _EBADF = _errno.EINVAL, _errno.EFAULT, _errno.EBADF
# No argtypes: conversion costs more than the syscall. cmd and size are small ints; the
# attr is passed as a ctypes pointer or a c_void_p built from an address.


def _arg(attr):
    """A ctypes argument that points at attr's memory (None: NULL)."""
    if type(attr) is int:
        return ctypes.c_void_p(attr)
    if attr is None:
        return None
    if isinstance(attr, (ctypes.Array, ctypes.Structure, ctypes.Union)):
        return ctypes.byref(attr)
    view = memoryview(attr)
    if view.readonly:
        # The kernel may write back into attr (count, info_len, next_id); give it a copy.
        return ctypes.create_string_buffer(view.tobytes(), view.nbytes)
    return ctypes.byref((ctypes.c_char * view.nbytes).from_buffer(view))


def _identity(fd: int):
    """What tells this open bpf object from another on the same fd number later: the link
    ("anon_inode:bpf-map") and the object's id from fdinfo. None if fd is not open."""
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
        with open(f"/proc/self/fdinfo/{fd}") as f:
            ids = [line for line in f if line.split(":")[0].endswith("_id")]
    except OSError:
        return None
    return link, tuple(ids)


class HostKernel:
    """The running kernel. ``bpf()`` returns the fd/0 result or -errno, like Emulator.bpf.

    Like an Emulator it has ``close()``, ``close_all()`` (the fds its bpf() returned that are
    still open), ``nr_cpus`` (the possible CPUs) and ``cpu``: setting it pins the calling
    thread to that CPU (sched_setaffinity), so the next call runs there, as an Emulator's
    next call runs on ``emu.cpu``."""

    def __init__(self):
        machine = os.uname().machine            # platform.machine(), without importing it
        if machine not in _NR_BPF:
            raise OSError(f"no bpf() syscall number known for {machine}")
        self.nr_bpf = _NR_BPF[machine]
        self._opened: dict[int, tuple] = {}        # fd -> its identity when bpf() returned it

    def bpf(self, cmd: int, attr, size: int) -> int:
        try:
            ret = _syscall(self.nr_bpf, cmd, _arg(attr), size & 0xFFFFFFFF)
        except (TypeError, ctypes.ArgumentError):
            return self._bad_arguments(cmd, attr, size)
        if ret < 0:
            return -ctypes.get_errno()
        if cmd in _FD_CMDS:
            self._opened[ret] = _identity(ret)
        return ret

    @staticmethod
    def _bad_arguments(cmd, attr, size) -> int:
        """What bpf() gives for arguments C could not have passed, as the Emulator does:
        a cmd or size that is not an int is EINVAL (no command has that number), an attr
        that is neither a buffer, an address nor None is a bad pointer, EFAULT."""
        if not isinstance(cmd, int) or not isinstance(size, int):
            return -_EINVAL
        return -_EFAULT

    def close(self, fd: int) -> int:
        if not isinstance(fd, int):
            return -_EBADF
        try:
            os.close(fd)
        except OSError as e:
            return -e.errno
        except OverflowError:
            return -_EBADF
        self._opened.pop(fd, None)
        return 0

    def close_all(self) -> None:
        """Close every fd this backend's bpf() returned that still holds what it returned
        (not one closed since and reused by another file)."""
        for fd, ident in list(self._opened.items()):
            if ident is not None and _identity(fd) == ident:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._opened.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_all()

    @property
    def nr_cpus(self) -> int:
        """num_possible_cpus(): per-CPU values have this many slots."""
        from .profile import host_possible_cpus
        return host_possible_cpus()

    @property
    def cpu(self) -> int:
        """The CPU the calling thread runs on now."""
        return _sched_getcpu()

    @cpu.setter
    def cpu(self, cpu: int) -> None:
        n = self.nr_cpus
        if not isinstance(cpu, int) or not 0 <= cpu < n:
            raise ValueError(f"cpu {cpu} is not a possible CPU (0..{n - 1})")
        os.sched_setaffinity(0, {cpu})

    @staticmethod
    def available() -> str | None:
        """None when bpf() works here, else why not (for skipping tests cleanly)."""
        import errno
        import struct
        try:
            host = HostKernel()
        except OSError as e:
            return str(e)
        attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIII", attr, 0, 2, 4, 4, 1)    # a 1-entry ARRAY
        fd = host.bpf(0, attr, 168)
        if fd < 0:
            return f"bpf(BPF_MAP_CREATE) failed: {errno.errorcode.get(-fd, -fd)}"
        os.close(fd)
        return None
