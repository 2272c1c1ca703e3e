"""LRU nodes are columns (bpfemu/maps/lru.py), not a Python object each: a filled LRU_HASH
map costs a few bytes a node more than a filled HASH map of the same size, and at most twice
what the kernel charges for it."""
import ctypes
import gc
import struct
import tracemalloc

from bpfemu import Emulator
from bpfemu.uapi import consts as c

N = 20000


def _filled_map_bytes(map_type, n=None) -> int:
    n = N if n is None else n
    emu = Emulator(seed=1, nr_cpus=2)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fd = emu.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(
            struct.pack("<IIII", map_type, 4, 8, n), 168), 168)
        key, value = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
        attr = ctypes.create_string_buffer(struct.pack(
            "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
        for i in range(n):
            struct.pack_into("<I", key, 0, i)
            assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def test_lru_nodes_cost_a_few_bytes_each():
    T = c.BpfMapType
    extra = (_filled_map_bytes(T.BPF_MAP_TYPE_LRU_HASH)
             - _filled_map_bytes(T.BPF_MAP_TYPE_HASH)) / N
    # Two list entries (next, prev) and three bytes (type, ref, cpu) a node; the node
    # numbers are the hash map's own slot numbers. A Python object a node was about 90.
    assert extra < 24, extra


# The memlock the live kernel charges for a map of 100,000 entries, key 4, value 8, on
# Linux 6.18 with 2 possible CPUs (its /proc/self/fdinfo line; htab_map_mem_usage()).
KERNEL_MEMLOCK_100K = {c.BpfMapType.BPF_MAP_TYPE_LRU_HASH: 8_498_048,
                       c.BpfMapType.BPF_MAP_TYPE_HASH: 8_498_192}


def test_a_filled_map_is_at_most_twice_the_kernels_memlock():
    # Filled and not walked since: every element waits in the store's pending slots (4
    # bytes each) and no bucket has a list yet (no array of heads).
    for map_type, memlock in KERNEL_MEMLOCK_100K.items():
        used = _filled_map_bytes(map_type, 100_000)
        assert used <= 2 * memlock, (map_type.name, used / memlock)
