"""Helpers shared by the HASH / PERCPU_HASH differential tests.

Raw element calls with explicit pointers and attr bytes, pages that fault on access (so a
"bad pointer" stays bad for the whole run), buffers that end right at such a page (to see
exactly how many bytes a command reads or writes), and fast key walks with reused buffers.
"""
import ctypes
import mmap
import struct

from bpfemu.uapi import consts as c

from tests.support import GUARD_BYTE, NCPU, elem_attr, readonly_address, unmapped_address

PAGE = 4096
HASH = c.BPF_MAP_TYPE_HASH
PERCPU_HASH = c.BPF_MAP_TYPE_PERCPU_HASH
NO_PREALLOC = c.BPF_F_NO_PREALLOC
ZERO_SEED = c.BPF_F_ZERO_SEED

LOOKUP = c.BPF_MAP_LOOKUP_ELEM
UPDATE = c.BPF_MAP_UPDATE_ELEM
DELETE = c.BPF_MAP_DELETE_ELEM
NEXT_KEY = c.BPF_MAP_GET_NEXT_KEY
LOOKUP_AND_DELETE = c.BPF_MAP_LOOKUP_AND_DELETE_ELEM

EPERM, ENOENT, E2BIG, EBADF, EFAULT, EEXIST, EINVAL = 1, 2, 7, 9, 14, 17, 22
EXIST_FLAG = c.BPF_EXIST

# (id, map_type, map_flags): the four configurations under test.
CONFIGS = [
    ("hash", HASH, 0),
    ("hash_noprealloc", HASH, NO_PREALLOC),
    ("percpu", PERCPU_HASH, 0),
    ("percpu_noprealloc", PERCPU_HASH, NO_PREALLOC),
]
CONFIG_IDS = [cfg[0] for cfg in CONFIGS]

# Flag values that are invalid for every element command that has a flags field
# (syscall_layer.md §4.3 notes: 3, 5, 8, 16, 1<<32 and 1<<63 give EINVAL on all types).
BAD_FLAGS = [3, 5, 8, 16, 1 << 32, 1 << 63]

# A closed fd and the "-1" fd; a non-map fd is made per test (a pipe).
CLOSED_FD = 0x7FFF0000
MINUS_ONE_FD = 0xFFFFFFFF
KERNEL_ADDR = 0xFFFF_FFFF_8100_0000     # a kernel-half address: copy_{from,to}_user refuses it


def round_up(x, a):
    return (x + a - 1) // a * a


def sys_value_size(map_type, value_size):
    """Bytes the syscall copies per element (syscall_layer.md §4.1)."""
    if map_type == PERCPU_HASH:
        return round_up(value_size, 8) * NCPU
    return value_size


_keep = []


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def none_page() -> int:
    """A mapped PROT_NONE page: every access faults, and nothing else can be mapped there
    (unlike an unmapped address, which a later mmap might reuse)."""
    m = mmap.mmap(-1, PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    assert _libc().mprotect(addr, PAGE, 0) == 0
    _keep.append(m)
    return addr


class Cliff:
    """A writable page followed by a PROT_NONE page: ``at(n)`` is an address with exactly
    n accessible bytes before the fault."""

    def __init__(self):
        self.m = mmap.mmap(-1, 2 * PAGE)
        self.base = ctypes.addressof(ctypes.c_char.from_buffer(self.m))
        assert _libc().mprotect(self.base + PAGE, PAGE, 0) == 0
        _keep.append(self.m)

    def at(self, n: int) -> int:
        return self.base + PAGE - n

    def fill(self, byte: int = GUARD_BYTE) -> None:
        ctypes.memset(self.base, byte, PAGE)

    def tail(self, n: int) -> bytes:
        """The last n writable bytes."""
        return ctypes.string_at(self.base + PAGE - n, n)

    def put(self, n: int, data: bytes) -> int:
        """Copy (at most n bytes of) data to at(n) and return that address."""
        addr = self.at(n)
        ctypes.memmove(addr, data, min(len(data), n))
        return addr


NONE_PAGE = none_page()


def bad_pointers(output: bool):
    """(name, address) of pointers that fault: NULL, unmapped, kernel half, PROT_NONE, and
    for outputs a read-only page."""
    ptrs = [("null", 0), ("unmapped", unmapped_address()), ("kernel", KERNEL_ADDR),
            ("prot_none", NONE_PAGE)]
    if output:
        ptrs.append(("readonly", readonly_address()))
    return ptrs


def attr_with_tail(fd, key=0, value=0, flags=0, pad=0, tail=None) -> bytes:
    """A 168-byte element attr; ``tail`` = {offset: byte} sets bytes past the 32 used ones."""
    raw = bytearray(elem_attr(fd, key, value, flags, pad).ljust(168, b"\0"))
    for off, byte in (tail or {}).items():
        raw[off] = byte
    return bytes(raw)


def call(cl, cmd, fd, key=0, value=0, flags=0, pad=0, tail=None) -> int:
    """One raw element command with explicit pointers (ints); returns 0/-errno."""
    return cl.bpf(cmd, attr_with_tail(fd, key, value, flags, pad, tail), 168)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


class Walker:
    """Fast raw GET_NEXT_KEY walks and updates on one backend, with reused buffers."""

    def __init__(self, backend, key_size: int, value_size_sys: int):
        self.b = backend
        self.ks = key_size
        self.attr = ctypes.create_string_buffer(168)
        self.k = ctypes.create_string_buffer(max(key_size, 1))
        self.n = ctypes.create_string_buffer(max(key_size, 1))
        self.v = ctypes.create_string_buffer(max(value_size_sys, 1))
        self.ka, self.na, self.va = (ctypes.addressof(self.k), ctypes.addressof(self.n),
                                     ctypes.addressof(self.v))

    def _call(self, cmd, fd, key, value, flags=0):
        struct.pack_into("<IIQQQ", self.attr, 0, fd, 0, key, value, flags)
        return self.b.bpf(cmd, self.attr, 168)

    def update(self, fd, key: bytes, value: bytes, flags=0) -> int:
        ctypes.memmove(self.ka, key, self.ks)
        ctypes.memmove(self.va, value, len(value))
        return self._call(UPDATE, fd, self.ka, self.va, flags)

    def delete(self, fd, key: bytes) -> int:
        ctypes.memmove(self.ka, key, self.ks)
        return self._call(DELETE, fd, self.ka, 0)

    def next_key(self, fd, key):
        if key is None:
            ret = self._call(NEXT_KEY, fd, 0, self.na)
        else:
            ctypes.memmove(self.ka, key, self.ks)
            ret = self._call(NEXT_KEY, fd, self.ka, self.na)
        return ret, (self.n.raw[:self.ks] if ret == 0 else None)

    def keys(self, fd) -> list:
        out, ret = [], self._call(NEXT_KEY, fd, 0, self.na)
        ks, ka, na = self.ks, self.ka, self.na
        while ret == 0:
            key = self.n.raw[:ks]
            out.append(key)
            ctypes.memmove(ka, key, ks)
            ret = self._call(NEXT_KEY, fd, ka, na)
            assert len(out) <= 1 << 20
        assert ret == -ENOENT, ret
        return out
