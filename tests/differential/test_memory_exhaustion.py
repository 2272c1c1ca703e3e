"""Preallocated maps and memory (bpfemu/memlimit.py, DEVIATION(memory)).

Linux allocates a preallocated map's elements at MAP_CREATE: creating one can fail with
ENOMEM, its updates never fail for memory. The emulator reserves the same at create, and
refuses a map whose reservation does not fit in what the process can get (RLIMIT_AS here)
before allocating anything. Each test runs in a forked child under a small RLIMIT_AS.
"""
import ctypes
import errno
import os
import resource
import struct
import warnings

from bpfemu import Emulator
from bpfemu.errors import EmulatorFault
from bpfemu.uapi import consts as c
from tests.support import NCPU, Client, elem_attr, in_forked_child

HASH, ARRAY, LRU_HASH = c.BPF_MAP_TYPE_HASH, c.BPF_MAP_TYPE_ARRAY, c.BPF_MAP_TYPE_LRU_HASH
PERCPU_ARRAY = c.BPF_MAP_TYPE_PERCPU_ARRAY


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def test_preallocation_past_rlimit_as_is_enomem_at_create():
    """A map whose preallocation is past RLIMIT_AS: -ENOMEM at create, before allocating
    (no EmulatorFault: nothing failed inside); a map without preallocation is made."""
    def body():
        emu = Emulator(nr_cpus=NCPU, seed=1)
        cl = Client(emu)
        resource.setrlimit(resource.RLIMIT_AS, (_address_space() + (256 << 20),
                                                resource.RLIM_INFINITY))
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            got = [cl.create(t, 4, 4096, 200000, flags) for t, flags in
                   ((HASH, 0), (LRU_HASH, 0), (ARRAY, 0), (PERCPU_ARRAY, 0),
                    (HASH, c.BPF_F_NO_PREALLOC))]
        faults = [x for x in w if issubclass(x.category, EmulatorFault)]
        if got[:4] != [-errno.ENOMEM] * 4 or got[4] < 0 or faults:
            return got, [str(x.message)[:200] for x in faults]
    in_forked_child(body)


def test_preallocated_map_fills_with_memory_nearly_gone():
    """A preallocated map made while memory was there takes all its elements after the
    address space has been limited to a few MiB above what is in use: the elements were
    reserved at create."""
    def body():
        emu = Emulator(nr_cpus=NCPU, seed=1)
        cl = Client(emu)
        n = 20000
        fd = cl.create(HASH, 4, 4096, n)
        if fd < 0:
            return "create", fd
        key = ctypes.create_string_buffer(4)
        value = ctypes.create_string_buffer(b"\x5a" * 4096, 4096)
        attr = ctypes.create_string_buffer(elem_attr(fd, ctypes.addressof(key),
                                                     ctypes.addressof(value)), 168)
        emu.bpf(c.BPF_MAP_GET_NEXT_KEY, attr, 24)       # the entry's first-call set-up
        rets = []
        resource.setrlimit(resource.RLIMIT_AS, (_address_space() + (24 << 20),
                                                resource.RLIM_INFINITY))
        for i in range(n):
            key.raw = struct.pack("<I", i)
            rets.append(emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32))
        key.raw = struct.pack("<I", n)
        full = emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
        if set(rets) != {0} or full != -errno.E2BIG or len(cl.keys(fd, 4)) != n:
            return sorted(set(rets)), full
    in_forked_child(body)
