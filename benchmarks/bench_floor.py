"""How fast can a Python bpf() emulator be at all? The floor, measured against the kernel.

Times the real BPF_MAP_LOOKUP_ELEM, UPDATE_ELEM (of an existing key) and GET_NEXT_KEY on a
two-entry HASH map (libc.syscall through ctypes, no argtypes) against the leanest calls a
Python emulator could make through the same bpf(cmd, attr, size) contract, built like
bpfemu's decoded calls (bpfemu/fastpath.py, syscall.py) with nothing else: check that the
call repeats the last one (the same attr object, command, size and attr bytes), take the
lock for an update, one dict operation, one copy into or out of the caller's pinned
buffers. No checks, no buckets, no order, no errors. The ratios printed are the best a
pure-Python emulator of this design can hope for on this machine; bpfemu's own calls are
measured by bench_map_ops.py.
Run: python benchmarks/bench_floor.py
"""
import ctypes
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import HostKernel  # noqa: E402
from bpfemu.emu_lock import new_lock  # noqa: E402

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

    NO_CALL = (None, None, None, None, None, None)

    def __init__(self, lookup_attr, update_attr, next_attr, key, value, next_key, elems: dict):
        self.lock = new_lock()                    # the emulator's own kind of lock
        key_view = memoryview(key).cast("B")
        value_view = memoryview(value).cast("B")
        value_buf = (ctypes.c_char * len(value_view)).from_buffer(value_view)
        next_view = memoryview(next_key).cast("B")
        next_buf = (ctypes.c_char * len(next_view)).from_buffer(next_view)
        keys = list(elems)
        successor = dict(zip(keys, keys[1:]))

        def lookup():
            value_buf.raw = elems[key_view.tobytes()]
            return 0

        def update():
            elems[key_view.tobytes()] = value_view.tobytes()
            return 0

        def get_next_key():
            next_buf.raw = successor[key_view.tobytes()]
            return 0
        # As in bpfemu: (attr, cmd, size, attr bytes, rest, runs without the lock), the call
        # made last tried first, then a dict under the attr and the command.
        self.decoded = {}
        for cmd, attr, fn in ((1, lookup_attr, lookup), (2, update_attr, update),
                              (4, next_attr, get_next_key)):
            size = 32 if cmd != 4 else 24
            self.decoded[id(attr) << 6 | cmd] = (attr, cmd, size, attr.raw, fn, cmd != 2)
        self.last_call = self.NO_CALL

    def bpf(self, cmd, attr, size):
        last_attr, last_cmd, last_size, last_raw, rest, lockless = self.last_call
        if (last_attr is attr and (last_cmd is cmd or last_cmd == cmd) and last_size == size
                and attr.raw == last_raw):
            if lockless:
                return rest()
            lock = self.lock
            lock.acquire()
            try:
                return rest()
            finally:
                lock.release()
        call = self.decoded.get(id(attr) << 6 | cmd)
        if call is not None and call[1] == cmd and call[2] == size and attr.raw == call[3]:
            self.last_call = call
            return self.bpf(cmd, attr, size)
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
    if syscall(nr, 4, nxt, 24) != 0:                           # 5 is last: walk from 6 -> 5
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
