"""Emulator vs live kernel, side by side in one run: per-op time and the ratio emulator/kernel.

One Python caller loop per operation, with attr, key and value in ctypes buffers. The kernel
side is the leanest call Python can make: libc.syscall(321, cmd, byref(attr), size) with no
argtypes. The emulator side is Emulator.bpf with the same buffers, twice: with unpinned
buffers (every key/value copy is a process_vm_readv/writev syscall, as safe as the kernel's
copy_from_user), and with the buffers pinned (Emulator.mem.pin), where copies are slices.
The three take turns, a chunk of keys (or walk steps) at a time, in an order that rotates,
so that the machine's drift in speed hits them alike.

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


class Side:
    """One backend's map and buffers, and the benchmark's caller loops on them. The loops run
    a range of keys (or walk steps) at a time, so that several backends can take turns."""

    def __init__(self, backend, map_type, max_entries, value_size=8, pin=False):
        self.backend, self.pin = backend, pin
        self.fd = create(backend, map_type, 4, value_size, max_entries)
        self.b = Bufs(self.fd, value_size)
        if pin:
            backend.mem.pin(*self.b.all())
        self.walked = 0
        self.walk_ret = None                 # None: the walk has not started

    def update(self, lo, hi):
        bpf, attr, key, pack = self.backend.bpf, self.b.attr, self.b.key, _pack_u32
        for i in range(lo, hi):
            pack(key, 0, i)
            bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32)

    def lookup(self, lo, hi):
        bpf, attr, key, pack = self.backend.bpf, self.b.attr, self.b.key, _pack_u32
        for i in range(lo, hi):
            pack(key, 0, i)
            bpf(c.BPF_MAP_LOOKUP_ELEM, attr, 32)

    def walk(self, steps):
        """Up to `steps` more calls of a GET_NEXT_KEY walk (the first from NULL); how many."""
        bpf, gnk, key, nk = self.backend.bpf, self.b.gnk, self.b.key, self.b.next_key
        calls = 0
        ret = self.walk_ret
        if ret is None:
            ret = bpf(c.BPF_MAP_GET_NEXT_KEY, self.b.gnk_first, 24)
            calls = 1
        walked = self.walked
        while ret == 0 and calls < steps:
            walked += 1
            ctypes.memmove(key, nk, 4)
            ret = bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24)
            calls += 1
        self.walked, self.walk_ret = walked, ret
        return calls

    def delete(self, lo, hi):
        bpf, attr, key, pack = self.backend.bpf, self.b.delete, self.b.key, _pack_u32
        for i in range(lo, hi):
            pack(key, 0, i)
            bpf(c.BPF_MAP_DELETE_ELEM, attr, 16)

    def close(self):
        if self.pin:
            self.backend.mem.unpin(*self.b.all())
        self.backend.close(self.fd)


_pack_u32 = struct.Struct("<I").pack_into


def _take_turns(sides, n, chunk, run):
    """run(side, lo, hi) for every chunk of range(n) on every side in turn, the order
    rotating from chunk to chunk; seconds each side spent."""
    spent = [0.0] * len(sides)
    order = list(range(len(sides)))
    clock = time.perf_counter
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        for j in order:
            t = clock()
            run(sides[j], lo, hi)
            spent[j] += clock() - t
        order.append(order.pop(0))
    return spent


def run_ops(backends, n, chunk, pins):
    """{op: [seconds per op, one per backend]} for update, lookup, get_next_key and delete
    over n keys, the backends taking turns a chunk of keys (or walk steps) at a time."""
    sides = [Side(b, c.BPF_MAP_TYPE_HASH, n, pin=p) for b, p in zip(backends, pins)]
    out = {}
    gc.disable()
    try:
        out["update"] = [t / n for t in _take_turns(sides, n, chunk, Side.update)]
        out["lookup"] = [t / n for t in _take_turns(sides, n, chunk, Side.lookup)]
        # n elements: n + 1 calls, the last one ENOENT.
        spent = _take_turns(sides, n + 1, chunk, lambda s, lo, hi: s.walk(hi - lo))
        out["get_next_key"] = [t / (n + 1) for t in spent]
        for s in sides:
            assert s.walked == n and s.walk_ret != 0, (s.walked, n)
        out["delete"] = [t / n for t in _take_turns(sides, n, chunk, Side.delete)]
    finally:
        gc.enable()
        for s in sides:
            s.close()
    return out


def run_lru_update(backends, max_entries, n, chunk, pins):
    """Seconds per LRU_HASH update at steady-state eviction (every insert a new key), one
    per backend, the backends taking turns a chunk at a time."""
    sides = [Side(b, c.BPF_MAP_TYPE_LRU_HASH, max_entries, pin=p) for b, p in zip(backends, pins)]
    try:
        for s in sides:
            s.update(0, max_entries * 2)                # reach steady state first
        base = max_entries * 2
        gc.disable()
        try:
            spent = _take_turns(sides, n, chunk,
                                lambda s, lo, hi: s.update(base + lo, base + hi))
        finally:
            gc.enable()
        return [t / n for t in spent]
    finally:
        for s in sides:
            s.close()


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


def kernel_memlock(n, value_size=8, map_type=c.BPF_MAP_TYPE_HASH):
    """The memlock the live kernel charges a map of n entries (its fdinfo), or None."""
    raw = RawKernel()
    fd = create(raw, map_type, 4, value_size, n)
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
                    help="rounds of the whole benchmark; medians are shown")
    ap.add_argument("--chunk", type=int, default=1000,
                    help="keys (or walk steps) a backend runs before the next takes its turn")
    args = ap.parse_args(argv)

    reason = HostKernel.available()
    kernel = None if reason else RawKernel()
    if kernel is None:
        print(f"live kernel not available ({reason}): emulator figures only")
    n = args.entries
    ops = ("update", "lookup", "get_next_key", "delete")
    names = [f"HASH {op}" for op in ops] + ["LRU_HASH update (evicting)"]
    samples = {name: {"kernel": [], "emu": [], "pinned": []} for name in names}
    sides = (["kernel"] if kernel is not None else []) + ["emu", "pinned"]
    # In every round the backends take turns, a chunk of keys at a time, in an order that
    # rotates from chunk to chunk, so that drift in the machine's speed (up to half, here,
    # within minutes) hits them alike; each ratio is taken within one round, and the median
    # of the rounds is reported.
    pins = [side == "pinned" for side in sides]

    def backends():
        return [kernel if side == "kernel" else Emulator(seed=1) for side in sides]
    for _ in range(args.rounds):
        times = run_ops(backends(), n, args.chunk, pins)
        for op in ops:
            for side, t in zip(sides, times[op]):
                samples[f"HASH {op}"][side].append(t)
        lru = run_lru_update(backends(), args.lru_entries, args.lru_ops, args.chunk, pins)
        for side, t in zip(sides, lru):
            samples["LRU_HASH update (evicting)"][side].append(t)

    print(f"{n} entries, key 4 B, value 8 B; LRU: {args.lru_entries} entries, "
          f"{args.lru_ops} evicting updates; backends taking turns every {args.chunk} ops; "
          f"median of {args.rounds} rounds. "
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
