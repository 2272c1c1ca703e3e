"""Emulator vs live kernel, side by side in one run: per-op time and the ratio emulator/kernel.

One Python caller loop per operation, with attr, key and value in ctypes buffers. The kernel
side is the leanest call Python can make: libc.syscall(321, cmd, byref(attr), size) with no
argtypes. The emulator side is Emulator.bpf with the same buffers, twice: with unpinned
buffers (every key/value copy is a process_vm_readv/writev syscall, as safe as the kernel's
copy_from_user), and with the buffers pinned (Emulator.mem.pin), where copies are slices.

Also: the emulator's memory for the map (tracemalloc) against the kernel's memlock
(/proc/self/fdinfo). Run: python benchmarks/bench_map_ops.py [--entries N]
"""
import argparse
import ctypes
import gc
import os
import struct
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import Emulator, HostKernel  # noqa: E402
from bpfemu.uapi import consts as c  # noqa: E402

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class RawKernel:
    """The live kernel with nothing in between: the baseline every ratio is against."""

    def __init__(self):
        self.nr = HostKernel().nr_bpf

    def bpf(self, cmd, attr, size):
        return _syscall(self.nr, cmd, attr, size)

    def close(self, fd):
        os.close(fd)


def create(backend, map_type, key_size, value_size, max_entries, flags=0):
    attr = ctypes.create_string_buffer(168)
    struct.pack_into("<IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    fd = backend.bpf(c.BPF_MAP_CREATE, attr, 168)
    if fd < 0:
        raise OSError(-fd if isinstance(backend, Emulator) else ctypes.get_errno(), "map create")
    return fd


class Bufs:
    def __init__(self, fd, value_size):
        self.key = ctypes.create_string_buffer(4)
        self.next_key = ctypes.create_string_buffer(4)
        self.value = ctypes.create_string_buffer(value_size)
        self.attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQQ", self.attr, 0, fd, 0, ctypes.addressof(self.key),
                         ctypes.addressof(self.value), 0)
        self.gnk = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQ", self.gnk, 0, fd, 0, ctypes.addressof(self.key),
                         ctypes.addressof(self.next_key))
        self.delete = ctypes.create_string_buffer(168)      # DELETE: value and flags must be 0
        struct.pack_into("<IIQ", self.delete, 0, fd, 0, ctypes.addressof(self.key))
        self.gnk_first = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQ", self.gnk_first, 0, fd, 0, 0, ctypes.addressof(self.next_key))

    def all(self):
        return (self.key, self.next_key, self.value, self.attr, self.delete, self.gnk,
                self.gnk_first)


def run_ops(backend, n, map_type=c.BPF_MAP_TYPE_HASH, value_size=8, pin=False):
    """{op: seconds per op} for update, lookup, get_next_key, delete over n keys."""
    fd = create(backend, map_type, 4, value_size, n)
    b = Bufs(fd, value_size)
    if pin:
        backend.mem.pin(*b.all())
    bpf, attr, key = backend.bpf, b.attr, b.key
    pack = struct.Struct("<I").pack_into
    out = {}
    gc.disable()
    try:
        t = time.perf_counter()
        for i in range(n):
            pack(key, 0, i)
            bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)
        out["update"] = (time.perf_counter() - t) / n
        t = time.perf_counter()
        for i in range(n):
            pack(key, 0, i)
            bpf(c.BPF_MAP_LOOKUP_ELEM, attr, 32)
        out["lookup"] = (time.perf_counter() - t) / n
        gnk, nk = b.gnk, b.next_key
        walked = 0
        t = time.perf_counter()
        ret = bpf(c.BPF_MAP_GET_NEXT_KEY, b.gnk_first, 24)
        while ret == 0:
            walked += 1
            ctypes.memmove(key, nk, 4)
            ret = bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24)
        out["get_next_key"] = (time.perf_counter() - t) / (walked + 1)
        assert walked == n, (walked, n)
        delete = b.delete
        t = time.perf_counter()
        for i in range(n):
            pack(key, 0, i)
            bpf(c.BPF_MAP_DELETE_ELEM, delete, 16)
        out["delete"] = (time.perf_counter() - t) / n
    finally:
        gc.enable()
        if pin:
            backend.mem.unpin(*b.all())
        backend.close(fd)
    return out


def run_lru_update(backend, max_entries, n, pin=False):
    """Seconds per LRU_HASH update at steady-state eviction (every insert a new key)."""
    fd = create(backend, c.BPF_MAP_TYPE_LRU_HASH, 4, 8, max_entries)
    b = Bufs(fd, 8)
    if pin:
        backend.mem.pin(*b.all())
    bpf, attr, key = backend.bpf, b.attr, b.key
    pack = struct.Struct("<I").pack_into
    for i in range(max_entries * 2):                   # reach steady state first
        pack(key, 0, i)
        bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)
    gc.disable()
    try:
        t = time.perf_counter()
        for i in range(max_entries * 2, max_entries * 2 + n):
            pack(key, 0, i)
            bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)
        return (time.perf_counter() - t) / n
    finally:
        gc.enable()
        if pin:
            backend.mem.unpin(*b.all())
        backend.close(fd)


def emulator_memory(n, value_size=8):
    """Bytes the emulator holds for a full n-entry HASH map (tracemalloc): once filled, and
    in the middle of a walk (holding the walk order)."""
    emu = Emulator(seed=1)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fd = create(emu, c.BPF_MAP_TYPE_HASH, 4, value_size, n)
    b = Bufs(fd, value_size)
    pack = struct.Struct("<I").pack_into
    for i in range(n):
        pack(b.key, 0, i)
        emu.bpf(c.BPF_MAP_UPDATE_ELEM, b.attr, 32)
    gc.collect()
    filled = tracemalloc.get_traced_memory()[0] - base
    emu.mem.pin(*b.all())
    ret = emu.bpf(c.BPF_MAP_GET_NEXT_KEY, b.gnk_first, 24)
    for _ in range(n // 2):
        ctypes.memmove(b.key, b.next_key, 4)
        ret = emu.bpf(c.BPF_MAP_GET_NEXT_KEY, b.gnk, 24)
    assert ret == 0
    gc.collect()
    walking = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    emu.mem.unpin(*b.all())
    emu.close(fd)
    return filled, walking


def kernel_memlock(n, value_size=8):
    raw = RawKernel()
    fd = create(raw, c.BPF_MAP_TYPE_HASH, 4, value_size, n)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("memlock:"):
                    return int(line.split()[1])
    finally:
        raw.close(fd)
    return None


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--lru-entries", type=int, default=10_000)
    ap.add_argument("--lru-ops", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5,
                    help="kernel and emulator runs alternate this many times; medians are shown")
    args = ap.parse_args(argv)

    reason = HostKernel.available()
    kernel = None if reason else RawKernel()
    if kernel is None:
        print(f"live kernel not available ({reason}): emulator figures only")
    n = args.entries
    ops = ("update", "lookup", "get_next_key", "delete")
    names = [f"HASH {op}" for op in ops] + ["LRU_HASH update (evicting)"]
    samples = {name: {"kernel": [], "emu": [], "pinned": []} for name in names}
    # Kernel and emulator alternate round by round, so drift in the machine's speed hits
    # both alike; every ratio is taken within one round, and the median is reported.
    for _ in range(args.rounds):
        for side in ("kernel", "emu", "pinned"):
            if side == "kernel" and kernel is None:
                continue
            backend = kernel if side == "kernel" else Emulator(seed=1)
            pin = side == "pinned"
            times = run_ops(backend, n, pin=pin)
            for op in ops:
                samples[f"HASH {op}"][side].append(times[op])
            samples["LRU_HASH update (evicting)"][side].append(
                run_lru_update(kernel if side == "kernel" else Emulator(seed=1),
                               args.lru_entries, args.lru_ops, pin=pin))

    print(f"{n} entries, key 4 B, value 8 B; LRU: {args.lru_entries} entries, "
          f"{args.lru_ops} evicting updates; median of {args.rounds} alternating rounds. "
          f"ns per op; ratio = emulator / kernel (median of per-round ratios)")
    print(f"{'operation':28} {'kernel':>8} {'emu':>8} {'ratio':>6} {'emu pinned':>11} {'ratio':>6}")
    for name in names:
        k, e, p = samples[name]["kernel"], samples[name]["emu"], samples[name]["pinned"]

        def ns(xs):
            return f"{_median(xs) * 1e9:8.0f}" if xs else f"{'-':>8}"

        def ratio(xs):
            if not k:
                return f"{'-':>6}"
            return f"{_median([x / y for x, y in zip(xs, k)]):6.2f}"
        print(f"{name:28} {ns(k)} {ns(e)} {ratio(e)} {ns(p):>11} {ratio(p)}")

    mem, walking = emulator_memory(n)
    ml = kernel_memlock(n) if kernel else None
    line = (f"memory for a full {n}-entry HASH map: emulator {mem / 2**20:.1f} MiB, "
            f"{walking / 2**20:.1f} MiB halfway through a walk")
    if ml:
        line += (f"; kernel memlock {ml / 2**20:.1f} MiB; ratio {mem / ml:.2f}, "
                 f"{walking / ml:.2f} walking")
    print(line)


if __name__ == "__main__":
    main()
