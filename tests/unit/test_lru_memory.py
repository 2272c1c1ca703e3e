"""LRU nodes are columns (bpfemu/maps/lru.py), not a Python object each: a filled LRU_HASH
map costs a few bytes a node more than a filled HASH map of the same size."""
import ctypes
import gc
import struct
import tracemalloc

from bpfemu import Emulator
from bpfemu.uapi import consts as c

N = 20000


def _filled_map_bytes(map_type) -> int:
    emu = Emulator(seed=1, nr_cpus=2)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fd = emu.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(
            struct.pack("<IIII", map_type, 4, 8, N), 168), 168)
        key, value = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
        attr = ctypes.create_string_buffer(struct.pack(
            "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
        for i in range(N):
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
