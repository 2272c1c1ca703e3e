"""Shared test helpers: backends, guarded buffers and attr builders for raw bpf() calls.

Tests build the attr bytes themselves (that is what is under test) and read back every byte
the call may have written, with guard bytes around each output buffer to catch overruns.
"""
import ctypes
import os
import struct
import sys
import threading

from bpfemu import Emulator, HostKernel
from bpfemu.profile import host_possible_cpus
from bpfemu.uapi import consts as c

GUARD = 16
GUARD_BYTE = 0xA5
NCPU = host_possible_cpus()

_host_reason = None
_host_checked = False


def host_unavailable_reason():
    """None when the live kernel's bpf() is usable here; otherwise why not."""
    global _host_reason, _host_checked
    if not _host_checked:
        _host_reason = HostKernel.available()
        _host_checked = True
    return _host_reason


class Buf:
    """A ctypes buffer with GUARD bytes of 0xA5 on both sides. ``addr`` is the payload."""

    def __init__(self, data=b"", size=None):
        data = bytes(data)
        self.size = len(data) if size is None else size
        self.raw = ctypes.create_string_buffer(bytes([GUARD_BYTE]) * (self.size + 2 * GUARD))
        self.addr = ctypes.addressof(self.raw) + GUARD
        self.set(data.ljust(self.size, b"\0")[: self.size])

    def set(self, data: bytes) -> None:
        ctypes.memmove(self.addr, bytes(data), len(data))

    @property
    def data(self) -> bytes:
        return ctypes.string_at(self.addr, self.size)

    def guards_intact(self) -> bool:
        full = self.raw.raw
        return full[:GUARD] == bytes([GUARD_BYTE]) * GUARD and \
            full[GUARD + self.size: GUARD + self.size + GUARD] == bytes([GUARD_BYTE]) * GUARD


def unmapped_address() -> int:
    """An address that is not mapped and stays so: the first page at or above 4 KiB and
    vm.mmap_min_addr. Only MAP_FIXED can map there; ordinary mmap() allocates top-down near
    mmap_base (whereas a page unmapped at random could be mapped again by a later allocation)."""
    try:
        with open("/proc/sys/vm/mmap_min_addr") as f:
            floor = int(f.read())
    except (OSError, ValueError):
        floor = 65536
    return max(floor, 8192) - 4096


_leaked = []


def readonly_address(size: int = 4096) -> int:
    """A mapped, read-only page (writes there fault, reads succeed)."""
    import mmap
    m = mmap.mmap(-1, 4096)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(addr, 4096, mmap.PROT_READ) == 0
    _leaked.append(m)
    return addr


def attr_buf(data: bytes = b"", size: int = 168):
    buf = ctypes.create_string_buffer(max(size, 168))
    ctypes.memmove(buf, data, len(data))
    return buf


def map_create_attr(map_type, key_size, value_size, max_entries, map_flags=0, *, numa_node=0,
                    name=b"", inner_map_fd=0, map_ifindex=0, btf_fd=0, btf_key_type_id=0,
                    btf_value_type_id=0, btf_vmlinux_value_type_id=0, map_extra=0,
                    value_type_btf_obj_fd=0, map_token_fd=0, excl_prog_hash=0,
                    excl_prog_hash_size=0) -> bytes:
    return struct.pack("<IIIIIII16sIIIIIQiiQI", map_type, key_size, value_size, max_entries,
                       map_flags, inner_map_fd, numa_node, bytes(name).ljust(16, b"\0")[:16],
                       map_ifindex, btf_fd, btf_key_type_id, btf_value_type_id,
                       btf_vmlinux_value_type_id, map_extra, value_type_btf_obj_fd, map_token_fd,
                       excl_prog_hash, excl_prog_hash_size)


def elem_attr(map_fd, key=0, value=0, flags=0, pad=0) -> bytes:
    """MAP_*_ELEM / GET_NEXT_KEY attr: key and value are addresses (value = next_key)."""
    return struct.pack("<IIQQQ", map_fd & 0xFFFFFFFF, pad, key, value, flags & (2**64 - 1))


class Client:
    """Raw calls on one backend, returning what the syscall returns plus the written bytes."""

    def __init__(self, backend):
        self.b = backend
        self.fds = []

    def bpf(self, cmd, attr: bytes, size=None):
        buf = attr_buf(attr, size or 168)
        return self.b.bpf(cmd, buf, len(attr) if size is None else size)

    def create(self, map_type, key_size, value_size, max_entries, map_flags=0, **kw):
        fd = self.bpf(c.BPF_MAP_CREATE, map_create_attr(map_type, key_size, value_size,
                                                         max_entries, map_flags, **kw), 168)
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def update(self, fd, key: bytes, value: bytes, flags=0):
        k, v = Buf(key), Buf(value)
        return self.bpf(c.BPF_MAP_UPDATE_ELEM, elem_attr(fd, k.addr, v.addr, flags), 32)

    def lookup(self, fd, key: bytes, value_size: int, flags=0):
        """(ret, value bytes or None). Asserts the guards around the value survived."""
        k, v = Buf(key), Buf(size=value_size)
        ret = self.bpf(c.BPF_MAP_LOOKUP_ELEM, elem_attr(fd, k.addr, v.addr, flags), 32)
        assert v.guards_intact(), "lookup wrote outside the value buffer"
        return ret, (v.data if ret == 0 else None)

    def delete(self, fd, key: bytes):
        k = Buf(key)
        return self.bpf(c.BPF_MAP_DELETE_ELEM, elem_attr(fd, k.addr), 16)

    def lookup_and_delete(self, fd, key: bytes, value_size: int, flags=0):
        k, v = Buf(key), Buf(size=value_size)
        ret = self.bpf(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, elem_attr(fd, k.addr, v.addr, flags), 32)
        assert v.guards_intact()
        return ret, (v.data if ret == 0 else None)

    def next_key(self, fd, key: bytes | None, key_size: int):
        k = Buf(key) if key is not None else None
        n = Buf(size=key_size)
        ret = self.bpf(c.BPF_MAP_GET_NEXT_KEY, elem_attr(fd, k.addr if k else 0, n.addr), 24)
        assert n.guards_intact()
        return ret, (n.data if ret == 0 else None)

    def keys(self, fd, key_size: int) -> list:
        """The full GET_NEXT_KEY walk from NULL."""
        out, cur = [], None
        while True:
            ret, nxt = self.next_key(fd, cur, key_size)
            if ret != 0:
                assert ret == -2, ret
                return out
            out.append(nxt)
            cur = nxt
            assert len(out) <= 1 << 20

    def close(self, fd):
        if fd in self.fds:
            self.fds.remove(fd)
        return self.b.close(fd)

    def close_all(self):
        for fd in list(self.fds):
            self.close(fd)


def race(nthreads: int, work) -> list:
    """work(i) for i in range(nthreads), each on its own thread, all released at once by a
    barrier; their results in order. Meanwhile the GIL changes hands every microsecond, not
    every 5 ms (a thousand calls), so that the threads interleave inside the calls: with the
    default, the race tests passed with the emulator's lock made a no-op."""
    barrier = threading.Barrier(nthreads)
    results = [None] * nthreads

    def run(i):
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(nthreads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return results
