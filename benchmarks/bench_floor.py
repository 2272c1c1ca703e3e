"""How fast can a Python bpf() emulator be at all? The floor, measured against the kernel.

Times the real BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM (of an existing key) and GET_NEXT_KEY on a
two-entry HASH map (libc.syscall through ctypes, no argtypes) against the leanest calls a
Python emulator could make through the same bpf(cmd, attr, size) contract, built like
bpfemu's decoded calls (bpfemu/fastpath.py) with nothing else: find the call decoded for
this attr object, compare the attr bytes with its snapshot, take the lock, one dict
operation, one copy into or out of the caller's pinned buffers. No checks, no buckets, no
order, no errors. The ratios printed are the best a pure-Python emulator of this design can
hope for on this machine; bpfemu's own calls are measured by bench_map_ops.py.
Run: python benchmarks/bench_floor.py
"""
import ctypes
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import HostKernel  # noqa: E402

N = 300_000


def best_of(fn, *args, rounds=3):
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(N):
            fn(*args)
        best = min(best, (time.perf_counter() - t) / N)
    return best


class LeanestEmulator:
    """Only what a decoded call cannot avoid: lookup and update are one dict operation and
    one copy, get_next_key a dict of successors."""

    def __init__(self, lookup_attr, update_attr, next_attr, key, value, next_key, elems: dict):
        self.lock = threading.RLock()
        key_view = memoryview(key).cast("B")
        value_view = memoryview(value).cast("B")
        next_view = memoryview(next_key).cast("B")
        keys = list(elems)
        successor = dict(zip(keys, keys[1:]))

        def lookup():
            value_view[:] = elems[key_view.tobytes()]
            return 0

        def update():
            elems[key_view.tobytes()] = value_view.tobytes()
            return 0

        def get_next_key():
            next_view[:] = successor[key_view.tobytes()]
            return 0
        self.decoded = {}
        for cmd, attr, fn in ((1, lookup_attr, lookup), (2, update_attr, update),
                              (4, next_attr, get_next_key)):
            self.decoded[id(attr)] = (cmd, 32 if cmd != 4 else 24, attr.raw, fn, attr)

    def bpf(self, cmd, attr, size):
        call = self.decoded.get(id(attr))
        if call is not None and call[0] == cmd and call[1] == size and attr.raw == call[2]:
            lock = self.lock
            lock.acquire()
            try:
                return call[3]()
            finally:
                lock.release()
        raise NotImplementedError


def main():
    reason = HostKernel.available()
    if reason:
        print(f"live kernel not available ({reason})")
        return
    syscall = ctypes.CDLL(None).syscall
    syscall.restype = ctypes.c_long
    nr = HostKernel().nr_bpf
    attr = ctypes.create_string_buffer(168)
    struct.pack_into("<IIII", attr, 0, 1, 4, 8, 1000)          # HASH, key 4, value 8
    fd = syscall(nr, 0, attr, 168)
    key, value, next_key = ctypes.c_uint32(5), ctypes.c_uint64(9), ctypes.c_uint32(0)
    elem = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQQQ", elem, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0)
    nxt = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQQ", nxt, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(next_key))
    elems = {}
    for k in (5, 6):                                           # 5 then 6, on both sides
        key.value = k
        assert syscall(nr, 2, elem, 32) == 0
        elems[bytes(key)] = bytes(value)
    key.value = 5
    assert syscall(nr, 4, nxt, 24) == 0                        # so the kernel walks 5 -> x
    first = bytes(next_key)
    if first == bytes(key):                                    # 5 is last: walk from the other
        key.value = 6
    order = [bytes(key)] + [k for k in elems if k != bytes(key)]
    elem2 = ctypes.create_string_buffer(elem.raw, 168)         # an attr object per command
    lean = LeanestEmulator(elem, elem2, nxt, key, value, next_key, {k: elems[k] for k in order})
    for name, cmd, a, size in (("lookup", 1, elem, 32), ("update", 2, elem2, 32),
                               ("get_next_key", 4, nxt, 24)):
        kernel = best_of(syscall, nr, cmd, a, size)
        python = best_of(lean.bpf, cmd, a, size)
        print(f"{name:13} kernel {kernel * 1e9:5.0f} ns, leanest Python {python * 1e9:5.0f} ns, "
              f"ratio {python / kernel:.2f}")
    os.close(fd)


if __name__ == "__main__":
    main()
