"""Instructions per element op (callgrind Ir), for before/after comparisons on a busy machine.

Wall-clock ratios swing with the machine's load; the instructions CPython executes for one op
do not. For each op this runs a small program under ``valgrind --tool=callgrind`` twice, once
with K ops and once with 2K, on the same map prepared the same way; the difference of the two
totals divided by K is the op's cost, every one-off cost (start-up, imports, the map's fill,
a walk's order) cancelling out. The caller's loop is bench_map_ops.py's (pack the key into a
ctypes buffer, call bpf), and ``loop`` is that loop with no bpf call, for reference.

Ops (a HASH map, key 4 B, value 8 B, unless said; decoded calls, buffers pinned unless
--unpinned):
  update         new keys into a map holding FILL of its 2*FILL entries
  replace        update of keys already in the map (BPF_ANY)
  lookup         keys in the map;  miss: keys not in it (ENOENT)
  walk           get_next_key steps, from the start, right after the fill
  walk_linked    the same on a map whose bucket lists were read since the fill
  delete         keys in the map;  lookup_and_delete: the same command
  percpu_update, percpu_lookup: PERCPU_HASH, new keys / keys in the map
  big_walk, big_replace: a HASH of 2^21 max entries (sparse heads), FILL keys in it
  entry, entry_lockless: the decoded call made last around a map op that does nothing
                 (the update's run, or a lookup's, swapped for one returning 0): what the
                 entry costs an update (the attr check, the trace check, the lock, the
                 journal's MARK) and a lookup, with the caller's loop

--no-gc turns the cyclic garbage collector off in the measured program: a full collection
costs some millions of instructions, and whether one falls in the run of K ops or of 2K
moves a figure by hundreds of Ir per op (an update measured 12,678 and 13,285 on the same
code), so before/after comparisons are made with it.

Run: python benchmarks/ir_per_op.py [--ops update,lookup] [--fill 20000] [-k 2000] [--no-gc]
Needs valgrind; takes about a minute per op on an idle core.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OPS = ("update", "replace", "lookup", "miss", "walk", "walk_linked", "delete",
       "lookup_and_delete", "percpu_update", "percpu_lookup", "big_walk", "big_replace", "loop",
       "entry", "entry_lockless")
DEFAULT_OPS = ("update", "replace", "lookup", "miss", "walk", "delete", "lookup_and_delete")


def child(op: str, fill: int, count: int, pinned: bool, store: str, gc_on: bool) -> None:
    """The measured program: prepare a map, then run ``count`` ops of one kind."""
    import ctypes
    import gc
    if not gc_on:
        gc.disable()
    import struct
    sys.path.insert(0, ROOT)
    from bpfemu import Emulator
    from bpfemu.uapi import consts as c

    emu = Emulator(seed=1, store=store)
    bpf = emu.bpf
    map_type = c.BPF_MAP_TYPE_PERCPU_HASH if op.startswith("percpu") else c.BPF_MAP_TYPE_HASH
    max_entries = 1 << 21 if op.startswith("big") else 2 * fill
    value_size = 8 * emu.nr_cpus if map_type == c.BPF_MAP_TYPE_PERCPU_HASH else 8
    create = ctypes.create_string_buffer(168)
    struct.pack_into("<IIIII", create, 0, map_type, 4, 8, max_entries, 0)
    fd = bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0, fd
    key = ctypes.create_string_buffer(4)
    next_key = ctypes.create_string_buffer(4)
    value = ctypes.create_string_buffer(value_size)
    elem = ctypes.create_string_buffer(168)         # lookup, update, lookup_and_delete
    struct.pack_into("<IIQQQ", elem, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0)
    delete = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQ", delete, 0, fd, 0, ctypes.addressof(key))
    gnk = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQQ", gnk, 0, fd, 0, ctypes.addressof(key), ctypes.addressof(next_key))
    first = ctypes.create_string_buffer(168)
    struct.pack_into("<IIQQ", first, 0, fd, 0, 0, ctypes.addressof(next_key))
    if pinned:
        emu.mem.pin(key, next_key, value, elem, delete, gnk, first)
    pack = struct.Struct("<I").pack_into
    for i in range(fill):                           # the fill: keys 0..fill-1
        pack(key, 0, i)
        assert bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
    if op == "walk_linked":                          # read the lists once: they are linked
        pack(key, 0, 0)
        assert bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24) == 0
        pack(key, 0, 1)
        assert bpf(c.BPF_MAP_GET_NEXT_KEY, gnk, 24) == 0
    # A warm-up op of the measured kind, so that both runs start with a decoded call.
    cmd, attr, size, keys = {
        "update": (c.BPF_MAP_UPDATE_ELEM, elem, 32, range(fill, fill + count + 1)),
        "percpu_update": (c.BPF_MAP_UPDATE_ELEM, elem, 32, range(fill, fill + count + 1)),
        "replace": (c.BPF_MAP_UPDATE_ELEM, elem, 32, range(count + 1)),
        "big_replace": (c.BPF_MAP_UPDATE_ELEM, elem, 32, range(count + 1)),
        "lookup": (c.BPF_MAP_LOOKUP_ELEM, elem, 32, range(count + 1)),
        "percpu_lookup": (c.BPF_MAP_LOOKUP_ELEM, elem, 32, range(count + 1)),
        "miss": (c.BPF_MAP_LOOKUP_ELEM, elem, 32, range(fill, fill + count + 1)),
        "delete": (c.BPF_MAP_DELETE_ELEM, delete, 16, range(count + 1)),
        "lookup_and_delete": (c.BPF_MAP_LOOKUP_AND_DELETE_ELEM, elem, 32, range(count + 1)),
        "loop": (None, None, None, range(count + 1)),
        "entry": (c.BPF_MAP_UPDATE_ELEM, elem, 32, range(count + 1)),
        "entry_lockless": (c.BPF_MAP_LOOKUP_ELEM, elem, 32, range(count + 1)),
    }.get(op, (c.BPF_MAP_GET_NEXT_KEY, gnk, 24, None))
    if op.startswith("entry"):
        # Make the call the one made last (the second call is the first decoded one), then
        # swap its run for one that does nothing: the entry's own cost is what remains.
        pack(key, 0, 0)
        for _ in range(2):
            bpf(cmd, attr, size)
        calls = emu.decoded_calls
        assert calls.last[0] is attr, "the call is not the one made last"
        calls.last = calls.last[:4] + (lambda: 0,) + calls.last[5:]
    if keys is None:                                 # a walk: count steps after the first
        assert bpf(c.BPF_MAP_GET_NEXT_KEY, first, 24) == 0
        memmove = ctypes.memmove
        for _ in range(count):
            memmove(key, next_key, 4)
            assert bpf(cmd, attr, size) == 0
        return
    if cmd is None:
        for i in keys:
            pack(key, 0, i)
        return
    for i in keys:
        pack(key, 0, i)
        bpf(cmd, attr, size)


def total_ir(op: str, fill: int, count: int, pinned: bool, store: str, gc_on: bool) -> int:
    """Ir of one run of the child under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, os.path.abspath(__file__), "--child", op,
               "--fill", str(fill), "-k", str(count), "--store", store]
        if not pinned:
            cmd.append("--unpinned")
        if not gc_on:
            cmd.append("--no-gc")
        env = dict(os.environ, PYTHONHASHSEED="0")
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            for line in f:
                m = re.match(r"(?:summary|totals): (\d+)", line)
                if m:
                    return int(m.group(1))
    raise RuntimeError("no totals in callgrind's output")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", default=",".join(DEFAULT_OPS),
                    help=f"comma-separated, of: {', '.join(OPS)}")
    ap.add_argument("--fill", type=int, default=20_000, help="keys in the map before the ops")
    ap.add_argument("-k", type=int, default=2_000, help="ops in the shorter run (<= fill)")
    ap.add_argument("--unpinned", action="store_true")
    ap.add_argument("--store", default="columnar", choices=("columnar", "simple"))
    ap.add_argument("--no-gc", action="store_true",
                    help="the garbage collector off in the measured program")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.fill, args.k, not args.unpinned, args.store, not args.no_gc)
        return
    ops = [op for op in args.ops.split(",") if op]
    unknown = set(ops) - set(OPS)
    if unknown:
        ap.error(f"unknown ops: {', '.join(sorted(unknown))}")
    k = args.k
    assert 2 * k < args.fill, "the longer run must stay within the fill"
    print(f"Ir per op: (Ir with {2 * k} ops - Ir with {k}) / {k}; HASH, key 4 B, value 8 B, "
          f"{args.fill} keys filled; {'unpinned' if args.unpinned else 'pinned'}, "
          f"decoded calls, {args.store} store{', gc off' if args.no_gc else ''}; "
          f"{sys.implementation.name} "
          f"{sys.version.split()[0]}", flush=True)
    for op in ops:
        short = total_ir(op, args.fill, k, not args.unpinned, args.store, not args.no_gc)
        long_ = total_ir(op, args.fill, 2 * k, not args.unpinned, args.store, not args.no_gc)
        print(f"{op:18} {(long_ - short) / k:9,.0f}", flush=True)


if __name__ == "__main__":
    main()
