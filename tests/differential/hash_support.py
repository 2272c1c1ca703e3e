"""Helpers shared by the HASH / PERCPU_HASH differential tests: their configurations, the
flag values every element command refuses, bad pointers, raw element calls with a dirty attr
tail. Everything generic (errnos, value sizes, pages that fault, the reused-buffer caller)
comes from tests/support.py and is re-exported under the names the tests import from here.
"""
from bpfemu.uapi import consts as c

from tests.support import (E2BIG, EBADF, EEXIST, EFAULT, EINVAL, ENOENT, EPERM,  # noqa: F401
                           NCPU, PAGE, Cliff, ReusedBufferCaller, elem_attr, prot_none_page,
                           readonly_address, round_up, sys_value_size, u64, unmapped_address)

HASH = c.BPF_MAP_TYPE_HASH
PERCPU_HASH = c.BPF_MAP_TYPE_PERCPU_HASH
NO_PREALLOC = c.BPF_F_NO_PREALLOC
ZERO_SEED = c.BPF_F_ZERO_SEED

LOOKUP = c.BPF_MAP_LOOKUP_ELEM
UPDATE = c.BPF_MAP_UPDATE_ELEM
DELETE = c.BPF_MAP_DELETE_ELEM
NEXT_KEY = c.BPF_MAP_GET_NEXT_KEY
LOOKUP_AND_DELETE = c.BPF_MAP_LOOKUP_AND_DELETE_ELEM

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
# (docs/linux-6.18.md#element-commands: 3, 5, 8, 16, 1<<32, 1<<63 are EINVAL on all types).
BAD_FLAGS = [3, 5, 8, 16, 1 << 32, 1 << 63]

# A closed fd and the "-1" fd; a non-map fd is made per test (a pipe).
CLOSED_FD = 0x7FFF0000
MINUS_ONE_FD = 0xFFFFFFFF
KERNEL_ADDR = 0xFFFF_FFFF_8100_0000     # a kernel-half address: copy_{from,to}_user refuses it


NONE_PAGE = prot_none_page()


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


# The fast raw caller the hash tests have always called a Walker.
Walker = ReusedBufferCaller
