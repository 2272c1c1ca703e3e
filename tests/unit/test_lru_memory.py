"""LRU nodes are columns (bpfemu/maps/lru.py), not a Python object each: a filled LRU_HASH
map costs a few bytes a node more than a filled HASH map of the same size, and at most twice
what the kernel charges for it."""
import contextlib
import errno
import ctypes
import gc
import struct
import tracemalloc
from functools import partial

import pytest

from bpfemu import Emulator
from bpfemu.uapi import consts as c

N = 20000


def _made_and_filled(emu, map_type, n: int):
    """A map of n entries (key 4, value 8) filled with keys 0..n-1: the key and value
    buffers and the element attr that points at them, for more calls."""
    fd = emu.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(
        struct.pack("<IIII", map_type, 4, 8, n), 168), 168)
    key, value = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
    for i in range(n):
        struct.pack_into("<I", key, 0, i)
        assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
    return key, value, attr


@contextlib.contextmanager
def _traced():
    """Yields a function giving the bytes allocated since the block began (tracemalloc,
    after a collection)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]

        def used() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - base
        yield used
    finally:
        tracemalloc.stop()


def _filled_map_bytes(map_type, n=None) -> int:
    n = N if n is None else n
    emu = Emulator(seed=1, nr_cpus=2, store="columnar")     # its memory is measured
    with _traced() as used:
        key, value, attr = _made_and_filled(emu, map_type, n)
        return used()


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


def _bytes_filled_then_replaced(map_type, n: int, new_keys: int):
    """Bytes a key of a map of n keys, filled, then after new_keys more keys went in (for a
    HASH map each after a delete of the oldest; an LRU map evicts)."""
    emu = Emulator(seed=1, nr_cpus=2, store="columnar")     # its memory is measured
    with _traced() as used:
        key, value, attr = _made_and_filled(emu, map_type, n)
        filled = used()
        lru = map_type == c.BpfMapType.BPF_MAP_TYPE_LRU_HASH
        for i in range(n, n + new_keys):
            if not lru:
                struct.pack_into("<I", key, 0, i - n)
                assert emu.bpf(c.BPF_MAP_DELETE_ELEM, attr, 16) == 0
            struct.pack_into("<I", key, 0, i)
            assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
        return filled / n, used() / n


def test_a_map_whose_keys_are_replaced_keeps_its_index_at_its_size():
    # Deletes leave dummies in the store's index dict, and CPython makes a dict that runs
    # out of room again at three times its keys: twice the table (about 44 bytes a key
    # more at 30,000 keys) unless the store makes it again at its size. What grows is
    # the pending slots' stale entries (4 bytes each, up to about 4 a key).
    T = c.BpfMapType
    for map_type, new_keys in ((T.BPF_MAP_TYPE_LRU_HASH, 60_000), (T.BPF_MAP_TYPE_HASH, 29_000)):
        filled, replaced = _bytes_filled_then_replaced(map_type, 30_000, new_keys)
        assert replaced - filled < 24, (map_type.name, filled, replaced)


@pytest.mark.filterwarnings("ignore")
def test_a_call_rolled_back_inside_the_index_rebuild_leaves_every_key(monkeypatch):
    # An exception that lands inside the store's switch to its rebuilt index dict (the new
    # dict is the index, its count not made yet), in a delete, rolls the call back whole:
    # the deleted key is back and every other key stays.
    from bpfemu.maps import htab_columns

    class RaisingOnce:
        """htab_columns.partial, raising once when armed (the switch makes count with it)."""
        armed = raised = False

        def __call__(self, *args):
            if self.armed and not self.raised:
                self.raised = True
                raise RuntimeError("injected inside the rebuild")
            return partial(*args)
    raising = RaisingOnce()
    monkeypatch.setattr(htab_columns, "partial", raising)
    emu = Emulator(seed=1, nr_cpus=2, store="columnar")     # its memory is measured
    n = 30_000
    fd = emu.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(
        struct.pack("<IIII", c.BpfMapType.BPF_MAP_TYPE_HASH, 4, 8, n), 168), 168)
    key, value = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 168)

    def call(cmd, k, v=0):
        struct.pack_into("<I", key, 0, k)
        struct.pack_into("<Q", value, 0, v)
        return emu.bpf(cmd, attr, 16 if cmd == c.BPF_MAP_DELETE_ELEM else 32)
    for i in range(n):
        assert call(c.BPF_MAP_UPDATE_ELEM, i, i) == 0
    live = set(range(n))
    i = n
    raising.armed = True
    while True:
        assert i < 4 * n, "no rebuild"
        ret = call(c.BPF_MAP_DELETE_ELEM, i - n)
        if raising.raised:
            # The entry rolled the call back and turned the stray exception into an errno.
            assert ret < 0
            break
        assert ret == 0
        live.discard(i - n)
        assert call(c.BPF_MAP_UPDATE_ELEM, i, i) == 0
        live.add(i)
        i += 1
    assert i - n in live
    for k in live:
        assert call(c.BPF_MAP_LOOKUP_ELEM, k) == 0 and struct.unpack("<Q", value.raw)[0] == k
    assert call(c.BPF_MAP_LOOKUP_ELEM, i) == -2     # ENOENT: not inserted yet
    # The map is full again, and its count says so: a batch insert of a new key finds no
    # room (htab_batch counts with store.count(), which the switch had not made yet).
    kbuf = ctypes.create_string_buffer(struct.pack("<I", i), 4)
    vbuf = ctypes.create_string_buffer(8)
    batch = ctypes.create_string_buffer(struct.pack(
        "<QQQQIIQQ", 0, 0, ctypes.addressof(kbuf), ctypes.addressof(vbuf), 1, fd, 0, 0), 168)
    assert emu.bpf(c.BPF_MAP_UPDATE_BATCH, batch, 56) == -errno.E2BIG
