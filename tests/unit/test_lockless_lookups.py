"""Decoded lookups take no lock (fastpath.py: Linux's syscall lookup holds only
rcu_read_lock()), so whatever a locked call does to the map, a lookup in another thread at
any moment sees a key that stays in the map, with its value."""
import ctypes
import struct
import sys
import threading

from bpfemu import Emulator
from bpfemu.uapi import consts as c

N = 60_000                      # enough deletes to make the store rebuild its index dict


def _batch(emu, fd, cmd, keys: bytes, n: int) -> int:
    kbuf = ctypes.create_string_buffer(keys, len(keys))
    vbuf = ctypes.create_string_buffer(8 * n)
    attr = ctypes.create_string_buffer(struct.pack(
        "<QQQQIIQQ", 0, 0, ctypes.addressof(kbuf), ctypes.addressof(vbuf), n, fd, 0, 0), 168)
    return emu.bpf(cmd, attr, 56)


def test_a_key_that_stays_is_found_by_every_lookup_beside_batch_deletes():
    emu = Emulator(nr_cpus=2, seed=1, store="columnar")
    fd = emu.bpf(c.BPF_MAP_CREATE, ctypes.create_string_buffer(
        struct.pack("<IIII", c.BPF_MAP_TYPE_HASH, 4, 8, 1 << 17), 168), 168)
    key = ctypes.create_string_buffer(struct.pack("<I", 0xFFFFFFF0), 4)
    value = ctypes.create_string_buffer(struct.pack("<Q", 7), 8)
    attr = ctypes.create_string_buffer(struct.pack(
        "<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0), 32)
    assert emu.bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
    lookup = ctypes.create_string_buffer(attr.raw, 32)     # an attr of its own: decoded
    stop = threading.Event()
    results = {}

    def looker():
        while not stop.is_set():
            ret = emu.bpf(c.BPF_MAP_LOOKUP_ELEM, lookup, 32)
            results[ret] = results.get(ret, 0) + 1

    keys = [struct.pack("<I", i) for i in range(N)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)                 # switch threads as often as possible
    thread = threading.Thread(target=looker)
    thread.start()
    try:
        for _ in range(3):
            assert _batch(emu, fd, c.BPF_MAP_UPDATE_BATCH, b"".join(keys), N) == 0
            for i in range(0, N, 500):
                assert _batch(emu, fd, c.BPF_MAP_DELETE_BATCH, b"".join(keys[i:i + 500]),
                              500) == 0
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert set(results) == {0}, results        # never ENOENT (-2) for the key that stayed
    assert results[0] > 1000, "the lookups hardly ran beside the deletes"
