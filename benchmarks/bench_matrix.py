"""The whole matrix, emulator vs live kernel in one run: every emulated map type x element op
x batch command, unpinned and pinned, at several sizes; the LibBpf and Map layers against
themselves on the kernel; memory against the kernel's memlock; import time.

The machinery is bench_map_ops.py's: the raw kernel call (libc.syscall through ctypes), the
backends taking turns a chunk of operations at a time in an order that rotates, each ratio
taken within one round and the median of the rounds shown. Ratio = emulator / kernel (time
per operation); below 1.0 the emulator is faster. Without the kernel (no bpf() permission)
the emulator's absolute figures are printed alone.

    python benchmarks/bench_matrix.py [--quick] [--sizes 1000,100000,1000000] [--rounds N]

Operations on a map of n entries (keys 0..n-1, 4-byte keys, 8-byte values; m = min(n, --cap)):
  new       update of keys 0..n-1 into the empty map (the fill)
  replace   update of keys 0..m-1, all present
  hit/miss  lookup of keys 0..m-1 / of keys n..n+m-1 (absent; out of range for arrays)
  walk      the first min(n, cap)+1 GET_NEXT_KEY steps from NULL
  delete    delete of the even keys below m (arrays: EINVAL, timed as such)
  walk_del  walk again, now with those holes
  lookup_and_delete  of the odd keys below m (arrays: an error, timed as such)
  UPDATE_BATCH, LOOKUP_BATCH, DELETE_BATCH: batches of 256, per element
"""
import argparse
import ctypes
import errno
import gc
import os
import struct
import subprocess
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from benchmarks.bench_map_ops import (RawKernel, _median, _take_turns, create,  # noqa: E402
                                       kernel_memlock)
from bpfemu import Emulator, HostKernel  # noqa: E402
from bpfemu.libbpf import LibBpf  # noqa: E402
from bpfemu.maps_api import Map  # noqa: E402
from bpfemu.uapi import consts as c  # noqa: E402

T = c.BpfMapType
MAP_TYPES = ("HASH", "PERCPU_HASH", "LRU_HASH", "LRU_PERCPU_HASH", "ARRAY", "PERCPU_ARRAY")
ELEM_OPS = ("new", "replace", "hit", "miss", "walk", "delete", "walk_del", "lookup_and_delete")
BATCH_OPS = ("UPDATE_BATCH", "LOOKUP_BATCH", "DELETE_BATCH")
BATCH = 256
# The raw calls under the layer rows (--layers-only prints them too): the LibBpf element rows
# are a fill, hits and deletes; the batch rows a fill, a walk and deletes.
LAYER_REFERENCE_OPS = ("new", "hit", "delete", "walk", "UPDATE_BATCH", "LOOKUP_BATCH",
                       "DELETE_BATCH")
_pack_u32 = struct.Struct("<I").pack_into
_set_count = struct.Struct("<I").pack_into


class MatrixSide:
    """One backend's map of one type and size, its buffers, and caller loops over key ranges."""

    def __init__(self, backend, map_type, n, value_bytes, pin):
        self.backend, self.pin, self.n = backend, pin, n
        self.fd = create(backend, map_type, 4, 8, n)
        self.key = ctypes.create_string_buffer(4)
        self.next_key = ctypes.create_string_buffer(4)
        self.value = ctypes.create_string_buffer(value_bytes)
        ka, va, na = (ctypes.addressof(b) for b in (self.key, self.value, self.next_key))
        self.attr = self._attr("<IIQQQ", self.fd, 0, ka, va, 0)
        self.delete_attr = self._attr("<IIQ", self.fd, 0, ka)
        self.gnk = self._attr("<IIQQ", self.fd, 0, ka, na)
        self.gnk_first = self._attr("<IIQQ", self.fd, 0, 0, na)
        self.keys = ctypes.create_string_buffer(4 * BATCH)
        self.values = ctypes.create_string_buffer(value_bytes * BATCH)
        self.token_in = ctypes.create_string_buffer(4)
        self.token_out = ctypes.create_string_buffer(4)
        kk, vv = ctypes.addressof(self.keys), ctypes.addressof(self.values)
        ti, to = ctypes.addressof(self.token_in), ctypes.addressof(self.token_out)
        # struct { in_batch, out_batch, keys, values; u32 count, map_fd; elem_flags, flags }
        self.upd_batch = self._attr("<QQQQII", 0, 0, kk, vv, BATCH, self.fd)
        self.del_batch = self._attr("<QQQQII", 0, 0, kk, 0, BATCH, self.fd)
        self.lkp_first = self._attr("<QQQQII", 0, to, kk, vv, BATCH, self.fd)
        self.lkp_next = self._attr("<QQQQII", ti, to, kk, vv, BATCH, self.fd)
        self.bufs = (self.key, self.next_key, self.value, self.attr, self.delete_attr, self.gnk,
                     self.gnk_first, self.keys, self.values, self.token_in, self.token_out,
                     self.upd_batch, self.del_batch, self.lkp_first, self.lkp_next)
        if pin:
            backend.mem.pin(*self.bufs)
        self.walk_state = None

    @staticmethod
    def _attr(fmt, *vals):
        a = ctypes.create_string_buffer(168)
        struct.pack_into(fmt, a, 0, *vals)
        return a

    def elem_loop(self, cmd, attr, size, keys):
        bpf, key, pack = self.backend.bpf, self.key, _pack_u32
        for i in keys:
            pack(key, 0, i)
            bpf(cmd, attr, size)

    def walk(self, steps):
        """Up to `steps` more calls of a GET_NEXT_KEY walk; how many it made."""
        bpf, gnk, key, nk = self.backend.bpf, self.gnk, self.key, self.next_key
        calls, ret = 0, self.walk_state
        if ret is None:
            ret = bpf(c.BPF_MAP_GET_NEXT_KEY, self.gnk_first, 24)
            calls = 1
        while ret == 0 and calls < steps:
            ctypes.memmove(key, nk, 4)
            ret = bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24)
            calls += 1
        self.walk_state = ret
        return calls

    def batch_loop(self, cmd, attr, lo, hi):
        """Keys lo..hi-1 in batches of BATCH through UPDATE_BATCH or DELETE_BATCH."""
        bpf, keys = self.backend.bpf, self.keys
        for start in range(lo, hi, BATCH):
            cnt = min(BATCH, hi - start)
            struct.pack_into(f"<{cnt}I", keys, 0, *range(start, start + cnt))
            _set_count(attr, 32, cnt)
            bpf(cmd, attr, 56)

    def lookup_batches(self, elems):
        """LOOKUP_BATCH from where the last one stopped, about `elems` elements' worth."""
        bpf = self.backend.bpf
        got = 0
        while got < elems and self.walk_state != "end":
            attr = self.lkp_first if self.walk_state is None else self.lkp_next
            _set_count(attr, 32, BATCH)
            ret = bpf(c.BPF_MAP_LOOKUP_BATCH, attr, 56)
            got += BATCH
            ctypes.memmove(self.token_in, self.token_out, 4)
            self.walk_state = "end" if ret != 0 else 1

    def close(self):
        if self.pin:
            self.backend.mem.unpin(*self.bufs)
        self.backend.close(self.fd)


def turns_per_chunk(sides, n, chunk, run):
    """bench_map_ops._take_turns, keeping each turn's time: [[(seconds, ops), ...] per side],
    turn j of every side covering the same operations, run moments apart."""
    per = [[] for _ in sides]
    where = {id(s): i for i, s in enumerate(sides)}
    clock = time.perf_counter

    def timed(side, lo, hi):
        t = clock()
        run(side, lo, hi)
        per[where[id(side)]].append((clock() - t, hi - lo))
    _take_turns(sides, n, chunk, timed)
    return per


def run_cell_set(backends, pins, map_type, n, cap, chunk, value_bytes):
    """{op: [[(seconds, ops) per turn], one list per backend]} for every op on one map type
    and size."""
    sides = [MatrixSide(b, map_type, n, value_bytes, p) for b, p in zip(backends, pins)]
    m = min(n, cap)
    chunk = min(chunk, max(50, m // 20))        # enough turns to interleave a small map
    out = {}

    def timed(name, count, run, turn=None):
        out[name] = turns_per_chunk(sides, count, turn or chunk, run)

    def elem(cmd, attr_name, size, base=0, step=1):
        def run(s, lo, hi):
            s.elem_loop(cmd, getattr(s, attr_name), size, range(base + lo * step,
                                                                 base + hi * step, step))
        return run

    def walk_all(name):
        for s in sides:
            s.walk_state = None
        steps = min(n, cap) + 1
        timed(name, steps, lambda s, lo, hi: s.walk(hi - lo))

    gc.disable()
    try:
        timed("new", n, elem(c.BPF_MAP_UPDATE_ELEM, "attr", 32))
        timed("replace", m, elem(c.BPF_MAP_UPDATE_ELEM, "attr", 32))
        timed("hit", m, elem(c.BPF_MAP_LOOKUP_ELEM, "attr", 32))
        timed("miss", m, elem(c.BPF_MAP_LOOKUP_ELEM, "attr", 32, base=n))
        walk_all("walk")
        timed("delete", m // 2, elem(c.BPF_MAP_DELETE_ELEM, "delete_attr", 16, step=2))
        walk_all("walk_del")
        timed("lookup_and_delete", m // 2,
              elem(c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, "attr", 32, base=1, step=2))
        # Batches: chunks of whole batches; the lookup walks what the map holds.
        bchunk = max(BATCH, chunk // BATCH * BATCH)
        timed("UPDATE_BATCH", m,
              lambda s, lo, hi: s.batch_loop(c.BPF_MAP_UPDATE_BATCH, s.upd_batch, lo, hi),
              bchunk)
        for s in sides:
            s.walk_state = None
        lk = min(n, cap)
        timed("LOOKUP_BATCH", lk, lambda s, lo, hi: s.lookup_batches(hi - lo), bchunk)
        timed("DELETE_BATCH", m,
              lambda s, lo, hi: s.batch_loop(c.BPF_MAP_DELETE_BATCH, s.del_batch, lo, hi),
              bchunk)
    finally:
        gc.enable()
        for s in sides:
            s.close()
    return out


# --- layers -------------------------------------------------------------------------------

def run_layers(backends, n, chunk):
    """LibBpf element and batch calls and Map operations on a HASH map, each backend's layer
    over its own backend: {row: [[(seconds, elements) per turn], one list per backend]}."""
    libs = [LibBpf(b) for b in backends]
    fds = [lib.bpf_map_create(T.BPF_MAP_TYPE_HASH, "m", 4, 8, n) for lib in libs]
    key, value = ctypes.c_uint32(), ctypes.c_uint64(7)
    keys = (ctypes.c_uint32 * BATCH)()
    values = (ctypes.c_uint64 * BATCH)()
    count = ctypes.c_uint32()
    sides = list(zip(libs, fds))
    out = {}

    def lib_elem(method):
        def run(side, lo, hi):
            lib, fd = side
            f = getattr(lib, method)
            for i in range(lo, hi):
                key.value = i
                if method == "bpf_map_delete_elem":
                    f(fd, key)
                else:
                    f(fd, key, value)
        return run

    def lib_batch(method):
        def run(side, lo, hi):
            lib, fd = side
            f = getattr(lib, method)
            for start in range(lo, hi, BATCH):
                cnt = min(BATCH, hi - start)
                keys[:cnt] = range(start, start + cnt)
                count.value = cnt
                if method == "bpf_map_delete_batch":
                    f(fd, keys, count)
                else:
                    f(fd, keys, values, count)
        return run

    walks = {}                                  # side -> [its walk's token, walk started]

    def lib_lookup_batch(side, lo, hi):
        """LOOKUP_BATCH calls of BATCH elements going on with one walk (starting again at
        its end), for about hi - lo elements."""
        lib, fd = side
        walk = walks.setdefault(id(side), [ctypes.c_uint32(), False])
        token_out = ctypes.c_uint32()
        got = 0
        while got < hi - lo:
            count.value = BATCH
            ret = lib.bpf_map_lookup_batch(fd, walk[0] if walk[1] else None, token_out, keys,
                                           values, count)
            if ret not in (0, -errno.ENOENT):
                raise OSError(-ret, "LOOKUP_BATCH")
            if ret and not walk[1] and not count.value:
                break                           # an empty map
            got += count.value
            walk[0].value = token_out.value
            walk[1] = ret == 0                  # at ENOENT the next call starts again

    gc.disable()
    try:
        for label, run in (("LibBpf update_elem", lib_elem("bpf_map_update_elem")),
                           ("LibBpf lookup_elem", lib_elem("bpf_map_lookup_elem")),
                           ("LibBpf delete_elem", lib_elem("bpf_map_delete_elem"))):
            out[label] = turns_per_chunk(sides, n, chunk, run)
        bchunk = max(BATCH, chunk // BATCH * BATCH)
        out["LibBpf update_batch"] = turns_per_chunk(sides, n, bchunk,
                                                     lib_batch("bpf_map_update_batch"))
        out["LibBpf lookup_batch"] = turns_per_chunk(sides, n, bchunk, lib_lookup_batch)
        out["LibBpf delete_batch"] = turns_per_chunk(sides, n, bchunk,
                                                     lib_batch("bpf_map_delete_batch"))
    finally:
        gc.enable()
        for lib, fd in sides:
            lib.close(fd)
    maps = [Map.create(lib, T.BPF_MAP_TYPE_HASH, ctypes.c_uint32, ctypes.c_uint64, n,
                       ints=True) for lib in libs]

    def m_set(mp, lo, hi):
        for i in range(lo, hi):
            mp[i] = i

    def m_get(mp, lo, hi):
        for i in range(lo, hi):
            mp[i]

    def m_del(mp, lo, hi):
        for i in range(lo, hi):
            del mp[i]
    walks = {}

    def m_iter(mp, lo, hi):
        """hi - lo more keys of `for k in mp` (a walk of the full map, started again at
        its end)."""
        it = walks.get(id(mp))
        for _ in range(lo, hi):
            k = next(it, None) if it is not None else None
            if k is None:
                it = walks[id(mp)] = iter(mp)
                next(it)
        walks[id(mp)] = it

    def m_update_batch(mp, lo, hi):
        mp.items_update_batch(range(lo, hi), range(lo, hi))

    def m_lookup_batch(mp, lo, hi):
        mp.items_lookup_batch(BATCH)            # the whole map, BATCH elements a call

    def m_delete_batch(mp, lo, hi):
        mp.items_delete_batch(range(lo, hi))
    gc.disable()
    try:
        for label, run in (("Map m[k] = v", m_set), ("Map m[k]", m_get),
                           ("Map for k in m", m_iter), ("Map del m[k]", m_del)):
            out[label] = turns_per_chunk(maps, n, chunk, run)
        bchunk = max(BATCH, chunk // BATCH * BATCH)
        out["Map items_update_batch"] = turns_per_chunk(maps, n, bchunk, m_update_batch)
        # A walk of the whole map per turn (n elements each): as many turns as rounds.
        out["Map items_lookup_batch"] = turns_per_chunk(maps, n, n, m_lookup_batch)
        out["Map items_delete_batch"] = turns_per_chunk(maps, n, bchunk, m_delete_batch)
    finally:
        gc.enable()
        for mp in maps:
            mp.close()
    return out


# --- memory and import --------------------------------------------------------------------

def emulator_memory(map_type, n, value_bytes):
    """Bytes the emulator holds (tracemalloc) for a map of n entries, every key written."""
    emu = Emulator(seed=1)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    side = MatrixSide(emu, map_type, n, value_bytes, pin=True)
    side.elem_loop(c.BPF_MAP_UPDATE_ELEM, side.attr, 32, range(n))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    side.close()
    return used


def import_times(rounds):
    """Median wall times of a fresh interpreter importing bpfemu, importing bpfemu and making
    an Emulator, and importing ctypes (the three interleaved, the order rotating)."""
    def once(code):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True,
                       cwd=os.path.join(os.path.dirname(__file__), ".."))
        return time.perf_counter() - t
    codes = ["import bpfemu", "import bpfemu; bpfemu.Emulator()", "import ctypes"]
    times = [[] for _ in codes]
    for r in range(rounds):
        for i in [(r + j) % len(codes) for j in range(len(codes))]:
            times[i].append(once(codes[i]))
    return tuple(_median(t) for t in times)


# --- main ---------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="sizes 1000,10000, one round, cap 2000: a minute or two")
    ap.add_argument("--sizes", default=None, help="comma-separated map sizes")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--cap", type=int, default=None,
                    help="operations timed per cell beyond the fill (default 20000)")
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--types", default=",".join(MAP_TYPES))
    ap.add_argument("--memory-sizes", default=None)
    ap.add_argument("--memory-only", action="store_true",
                    help="only the memory rows (no timed cells, layers or import time)")
    ap.add_argument("--layers-only", action="store_true",
                    help="only the LibBpf and Map rows (at the largest size, capped), and "
                         "the bpf() calls they make on a HASH map of that size")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in (args.sizes or ("1000,10000" if args.quick
                                              else "1000,100000,1000000")).split(",")]
    rounds = args.rounds or (1 if args.quick else 3)
    cap = args.cap or (2000 if args.quick else 20000)
    mem_sizes = [int(s) for s in (("10000" if args.quick else "100000,1000000")
                                  if args.memory_sizes is None else args.memory_sizes).split(",")
                 if s]
    types = args.types.split(",")

    reason = HostKernel.available()
    kernel = None if reason else RawKernel()
    if kernel is None:
        print(f"live kernel not available ({reason}): emulator figures only")
    sides = (["kernel"] if kernel is not None else []) + ["emu", "pinned"]
    pins = [s == "pinned" for s in sides]
    nr_cpus = Emulator().profile.nr_cpus          # possible CPUs: per-CPU value buffers

    def backends():
        return [kernel if s == "kernel" else Emulator(seed=1) for s in sides]

    # (row label) -> {side: [(seconds, ops) of each turn, over every round]}; turn j of every
    # side ran the same operations moments apart, so a ratio is taken turn by turn (drift and
    # the other users of the machine hit both sides of a turn alike) and the median shown.
    samples = {}

    def add(label, side_turns):
        d = samples.setdefault(label, {s: [] for s in sides})
        for s, turns in zip(sides, side_turns):
            d[s].extend(turns)

    t_start = time.perf_counter()
    for _ in range(0 if args.memory_only else rounds):
        for n in ([] if args.layers_only else sizes):
            for tname in types:
                mt = getattr(T, f"BPF_MAP_TYPE_{tname}")
                vb = 8 * nr_cpus if "PERCPU" in tname else 8
                res = run_cell_set(backends(), pins, mt, n, cap, args.chunk, vb)
                for op in ELEM_OPS + BATCH_OPS:
                    add((tname, n, op), res[op])
        layer_n = min(max(sizes), cap)
        lb = [HostKernel() if s == "kernel" else Emulator(seed=1) for s in sides]
        for label, ts in run_layers(lb, layer_n, args.chunk).items():
            # The layer over an unpinned and over a pinned emulator are the same here: the
            # layer builds its own buffers, so the "pinned" side is the layer as it stands.
            add((label, layer_n, ""), ts)
        if args.layers_only:
            # What the layers' calls cost without a layer, on a map of the same size in the
            # same round: the bpf() rows the layer rows are read against.
            res = run_cell_set(backends(), pins, T.BPF_MAP_TYPE_HASH, layer_n, cap, args.chunk, 8)
            for op in LAYER_REFERENCE_OPS:
                add(("bpf() HASH", layer_n, op), res[op])

    def ns(turns):
        return f"{_median([t / k for t, k in turns]) * 1e9:9.0f}" if turns else f"{'-':>9}"

    def ratio(d, side):
        if "kernel" not in d:
            return None
        return _median([t / tk for (t, _), (tk, _) in zip(d[side], d["kernel"]) if tk > 0])

    def fmt_ratio(r):
        return f"{r:6.2f}" if r is not None else f"{'-':>6}"

    print(f"ns per operation (per element for batches), median over turns; ratio = emulator / "
          f"kernel, median of the per-turn ratios over {rounds} round(s); cap {cap}; batches "
          f"of {BATCH}; {nr_cpus} possible CPUs; backends taking turns every "
          f"min({args.chunk}, cap/20) ops")
    print(f"{'map type':16} {'entries':>8} {'operation':18} {'kernel':>9} {'emu':>9} "
          f"{'ratio':>6} {'pinned':>9} {'ratio':>6}")
    worst = None
    for label, d in samples.items():
        what, n, op = label
        re, rp = ratio(d, "emu"), ratio(d, "pinned")
        if rp is not None and (worst is None or rp > worst[0]):
            worst = (rp, label)
        print(f"{what:16} {n:8} {op:18} {ns(d.get('kernel'))} {ns(d['emu'])} "
              f"{fmt_ratio(re)} {ns(d['pinned'])} {fmt_ratio(rp)}")

    print()
    print(f"{'memory, filled':32} {'entries':>8} {'emulator MiB':>13} {'memlock MiB':>12} "
          f"{'ratio':>6}")
    worst_mem = None
    for n in ([] if args.layers_only else mem_sizes):
        for tname in types:
            mt = getattr(T, f"BPF_MAP_TYPE_{tname}")
            vb = 8 * nr_cpus if "PERCPU" in tname else 8
            used = emulator_memory(mt, n, vb)
            ml = kernel_memlock(n, map_type=mt) if kernel else None
            r = used / ml if ml else None
            if r is not None and (worst_mem is None or r > worst_mem[0]):
                worst_mem = (r, tname, n)
            print(f"{tname:32} {n:8} {used / 2**20:13.1f} "
                  f"{(ml / 2**20 if ml else float('nan')):12.1f} {fmt_ratio(r)}")

    print()
    if not args.memory_only:
        bp, emu, ct = import_times(max(rounds, 5))
        print(f"import time (fresh interpreter, median): import bpfemu {bp * 1e3:.0f} ms, "
              f"import ctypes {ct * 1e3:.0f} ms, ratio {bp / ct:.2f}; import bpfemu and "
              f"Emulator() {emu * 1e3:.0f} ms, ratio {emu / ct:.2f}")
    if worst:
        r, (what, n, op) = worst
        print(f"worst pinned cell: {what} {n} {op}: {r:.2f}")
    if worst_mem:
        print(f"worst memory ratio: {worst_mem[1]} {worst_mem[2]}: {worst_mem[0]:.2f}")
    print(f"({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
