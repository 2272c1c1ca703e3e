"""How fast can a Python bpf() emulator be at all? The floor, measured against the kernel.

Times the real BPF_MAP_LOOKUP_ELEM (libc.syscall through ctypes, no argtypes) against the
leanest lookup a Python emulator could do through the same bpf(cmd, attr, size) contract: a
lock, the attr copy and unpack, three dict lookups and two slices, with no checks at all.
The ratio printed is the best any pure-Python emulator can hope for on this machine.
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
    """Only what a lookup cannot avoid; pointers resolve through a dict of pinned buffers."""

    def __init__(self, fd, key, value):
        self.lock = threading.RLock()
        self.elem = struct.Struct("<I4xQQQ")
        self.files = {fd: object()}
        self.pinned = {ctypes.addressof(key): memoryview(key).cast("B"),
                       ctypes.addressof(value): memoryview(value).cast("B")}
        self.elems = {bytes(key): bytes(value)}

    def bpf(self, cmd, attr, size):
        with self.lock:
            raw = bytes(attr)
            if len(raw) != size:
                raw = raw[:size]
            ufd, key_ptr, value_ptr, _ = self.elem.unpack_from(raw)
            self.files.get(ufd)
            key = self.pinned.get(key_ptr)[:4].tobytes()
            self.pinned.get(value_ptr)[:8] = self.elems.get(key)
            return 0


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
    key, value = ctypes.c_uint32(5), ctypes.c_uint64(9)
    elem = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQQQ", elem, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0)
    assert syscall(nr, 2, elem, 32) == 0
    kernel = best_of(syscall, nr, 1, elem, 32)
    lean = best_of(LeanestEmulator(fd, key, value).bpf, 1, elem, 32)
    os.close(fd)
    print(f"kernel lookup {kernel * 1e9:.0f} ns, leanest Python lookup {lean * 1e9:.0f} ns, "
          f"ratio {lean / kernel:.2f}")


if __name__ == "__main__":
    main()
