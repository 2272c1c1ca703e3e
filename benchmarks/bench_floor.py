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

The batch floor (``--batches``): UPDATE_BATCH, LOOKUP_BATCH and DELETE_BATCH of 256
elements on a HASH map, against the leanest Python batch of this contract: the keys and
values read with one copy each, split into bytes, one dict operation per element made at C
speed (dict.update of zipped lists, map() of the dict's own method), the results joined and
written with one copy each, the count written; per element.
Run: python benchmarks/bench_floor.py [--batches]
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


BATCH = 256


def batch_floor(syscall, nr, rounds=5, reps=2000):
    """Per-element time of the kernel's batch commands and of the leanest Python batch,
    taking turns, best of rounds."""
    from collections import deque
    attr = ctypes.create_string_buffer(168)
    struct.pack_into("<IIII", attr, 0, 1, 4, 8, 1024)         # HASH, key 4, value 8
    fd = syscall(nr, 0, attr, 168)
    keys = ctypes.create_string_buffer(struct.pack(f"<{BATCH}I", *range(BATCH)), 4 * BATCH)
    values = ctypes.create_string_buffer(bytes(8 * BATCH), 8 * BATCH)
    out = ctypes.create_string_buffer(4)
    kk, vv = ctypes.addressof(keys), ctypes.addressof(values)
    upd = ctypes.create_string_buffer(struct.pack("<QQQQII", 0, 0, kk, vv, BATCH, fd), 168)
    dele = ctypes.create_string_buffer(struct.pack("<QQQQII", 0, 0, kk, 0, BATCH, fd), 168)
    look = ctypes.create_string_buffer(
        struct.pack("<QQQQII", 0, ctypes.addressof(out), kk, vv, BATCH, fd), 168)
    kview, vview = memoryview(keys).cast("B"), memoryview(values).cast("B")
    elems = {}
    lock = new_lock()

    def py_update():
        with lock:
            kb, vb = kview[:4 * BATCH].tobytes(), vview[:8 * BATCH].tobytes()
            elems.update(zip([kb[i:i + 4] for i in range(0, 4 * BATCH, 4)],
                             [vb[i:i + 8] for i in range(0, 8 * BATCH, 8)]))
            struct.pack_into("<I", upd, 32, BATCH)

    def py_lookup():
        ks = list(elems)[:BATCH]
        kview[:4 * BATCH] = b"".join(ks)
        vview[:8 * BATCH] = b"".join(map(elems.__getitem__, ks))
        struct.pack_into("<I", look, 32, BATCH)

    def py_delete():
        with lock:
            kb = kview[:4 * BATCH].tobytes()
            deque(map(elems.__delitem__, [kb[i:i + 4] for i in range(0, 4 * BATCH, 4)]),
                  maxlen=0)
            struct.pack_into("<I", dele, 32, BATCH)

    def kernel_cmd(cmd, a):
        def run():
            struct.pack_into("<I", a, 32, BATCH)
            syscall(nr, cmd, a, 56)
        return run
    sides = {"kernel": (kernel_cmd(26, upd), kernel_cmd(24, look), kernel_cmd(27, dele)),
             "python": (py_update, py_lookup, py_delete)}
    best = {(side, op): float("inf") for side in sides for op in ("update", "lookup", "delete",
                                                                  "pair")}
    clock = time.perf_counter
    for _ in range(rounds):
        for side, (update, lookup, delete) in sides.items():
            t = clock()
            for _ in range(reps):
                update()
            t_update = clock() - t
            t = clock()
            for _ in range(reps):
                lookup()
            t_lookup = clock() - t
            t = clock()
            for _ in range(reps):
                update()            # the keys back, then delete them: a pair
                delete()
            t_pair = clock() - t
            for op, dt in (("update", t_update), ("lookup", t_lookup), ("pair", t_pair)):
                best[side, op] = min(best[side, op], dt / reps / BATCH)
    for side in sides:
        best[side, "delete"] = best[side, "pair"] - best[side, "update"]
    for op in ("update", "lookup", "delete"):
        k, p = best["kernel", op], best["python", op]
        print(f"{op.upper() + '_BATCH':13} kernel {k * 1e9:5.0f} ns, leanest Python {p * 1e9:5.0f}"
              f" ns an element (batches of {BATCH}), ratio {p / k:.2f}")
    os.close(fd)


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
    if "--batches" in sys.argv:
        batch_floor(syscall, nr)


if __name__ == "__main__":
    main()
