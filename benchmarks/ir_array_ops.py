"""Instructions per op for ARRAY / PERCPU_ARRAY element calls and `Map` element ops, for
before/after comparisons of the emulator's Python code (ir_per_op.py's method).

Run under callgrind twice with different op counts (the set-up is the same for every op of
a map type, so one run with 0 ops serves them all); the difference of the two totals divided
by the difference of the counts is the cost of one op, free of start-up and set-up:

    for n in 0 10000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python benchmarks/ir_array_ops.py array update $n; done
    python benchmarks/ir_array_ops.py --diff /tmp/cg.0 /tmp/cg.10000 10000

Map types: array, percpu_array, percpu_hash (bpf() on pinned buffers, decoded calls), and
map-array / map-hash (the `Map` layer over an Emulator, ints=True).
Ops: update, hit, miss, delete, walk (one GET_NEXT_KEY step); for map-*: set, get, del,
iter (one key of a full walk with `for k in m`).
"""
import ctypes
import re
import struct
import subprocess
import sys


def raw_calls(kind: str, op: str, n: int) -> None:
    from bpfemu import Emulator
    from bpfemu.uapi import consts as c
    emu = Emulator(nr_cpus=2, seed=1)
    mt = {"array": c.BPF_MAP_TYPE_ARRAY, "percpu_array": c.BPF_MAP_TYPE_PERCPU_ARRAY,
          "percpu_hash": c.BPF_MAP_TYPE_PERCPU_HASH}[kind]
    entries = 1024
    create = ctypes.create_string_buffer(struct.pack("<IIII", mt, 4, 8, entries), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0, fd
    key = ctypes.create_string_buffer(4)
    nxt = ctypes.create_string_buffer(4)
    val = ctypes.create_string_buffer(8 * (2 if "percpu" in kind else 1))
    ka, va, na = (ctypes.addressof(b) for b in (key, val, nxt))
    attr = ctypes.create_string_buffer(struct.pack("<IIQQQ", fd, 0, ka, va, 0), 168)
    gnk = ctypes.create_string_buffer(struct.pack("<IIQQ", fd, 0, ka, na), 168)
    emu.mem.pin(key, val, nxt, attr, gnk)
    bpf = emu.bpf
    U, D, L = c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM, c.BPF_MAP_LOOKUP_ELEM
    G = c.BPF_MAP_GET_NEXT_KEY
    for i in range(64):                      # some elements, and the calls decoded
        key.raw = struct.pack("<I", i)
        assert bpf(U, attr, 32) == 0
        bpf(L, attr, 32)
        bpf(G, gnk, 24)
    key.raw = struct.pack("<I", 7 if op != "miss" else entries + 7)
    cmd, a, size = {"update": (U, attr, 32), "hit": (L, attr, 32), "miss": (L, attr, 32),
                    "delete": (D, attr, 16), "walk": (G, gnk, 24)}[op]
    for _ in range(n):
        bpf(cmd, a, size)


def map_calls(kind: str, op: str, n: int) -> None:
    from bpfemu import Emulator
    from bpfemu.maps_api import Map
    from bpfemu.uapi import consts as c
    mt = c.BPF_MAP_TYPE_ARRAY if kind == "map-array" else c.BPF_MAP_TYPE_HASH
    m = Map.create(Emulator(nr_cpus=2, seed=1), mt, ctypes.c_uint32, ctypes.c_uint64,
                   max(n, 64), ints=True)
    for i in range(64):
        m[i] = i
        m[i]
    if op == "set":
        for i in range(n):
            m[i] = i
    elif op == "get":
        for i in range(n):
            m[i % 64]
    elif op == "del":
        for i in range(n):
            m[n] = 1                         # HASH: an update and a delete; ARRAY: EINVAL
            try:
                del m[n]
            except OSError:
                pass
    elif op == "iter":
        for i in range(n):
            m[i] = i
        for _ in m:
            pass
    else:
        raise SystemExit(f"unknown op {op}")


def diff(a: str, b: str, dn: int) -> float:
    def total(path):
        out = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
        return int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1)
                   .replace(",", ""))
    return (total(b) - total(a)) / dn


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[0] == "--diff":
        print(f"{diff(args[1], args[2], int(args[3])):.0f} Ir per op")
    elif args[0].startswith("map-"):
        map_calls(args[0], args[1], int(args[2]))
    else:
        raw_calls(args[0], args[1], int(args[2]))
