"""HostKernel: the live kernel's bpf() through ctypes, with the Emulator's two methods."""
import ctypes
import os
import platform

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "i686": 357, "armv7l": 386,
           "s390x": 351, "ppc64le": 361}

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
# No argtypes: conversion costs more than the syscall. cmd and size are small ints; the
# attr is passed as a ctypes pointer or a c_void_p built from an address.


def _arg(attr):
    """A ctypes argument that points at attr's memory."""
    if type(attr) is int:
        return ctypes.c_void_p(attr)
    if isinstance(attr, (ctypes.Array, ctypes.Structure, ctypes.Union)):
        return ctypes.byref(attr)
    view = memoryview(attr)
    if view.readonly:
        # The kernel may write back into attr (count, info_len, next_id); give it a copy.
        return ctypes.create_string_buffer(view.tobytes(), view.nbytes)
    return ctypes.byref((ctypes.c_char * view.nbytes).from_buffer(view))


class HostKernel:
    """The running kernel. ``bpf()`` returns the fd/0 result or -errno, like Emulator.bpf."""

    def __init__(self):
        machine = platform.machine()
        if machine not in _NR_BPF:
            raise OSError(f"no bpf() syscall number known for {machine}")
        self.nr_bpf = _NR_BPF[machine]

    def bpf(self, cmd: int, attr, size: int) -> int:
        ret = _syscall(self.nr_bpf, cmd, _arg(attr), size & 0xFFFFFFFF)
        if ret < 0:
            return -ctypes.get_errno()
        return ret

    def close(self, fd: int) -> int:
        try:
            os.close(fd)
            return 0
        except OSError as e:
            return -e.errno

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
