"""Instructions per bpf() call, for before/after comparisons of the emulator's Python code.

Run under callgrind twice with different op counts; the difference of the two totals divided
by the difference of the counts is the cost of one op, free of start-up and set-up:

    for n in 2000 4000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python benchmarks/ir_per_op.py update $n; done
    callgrind_annotate /tmp/cg.2000 | head -1 ...   (or: python benchmarks/ir_per_op.py --diff)

Ops: update (a decoded HASH replace on pinned buffers), update-new (insert then delete, two
ops), delete, lookup, lru-update, array-update; ``--src DIR`` imports bpfemu from DIR.
"""
import ctypes
import struct
import sys


def main(op: str, n: int) -> None:
    from bpfemu import Emulator
    from bpfemu.uapi import consts as c
    emu = Emulator(nr_cpus=2, seed=1)
    mt = {"lru-update": c.BPF_MAP_TYPE_LRU_HASH,
          "array-update": c.BPF_MAP_TYPE_ARRAY}.get(op, c.BPF_MAP_TYPE_HASH)
    create = ctypes.create_string_buffer(struct.pack("<IIII", mt, 4, 8, 1024), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0, fd
    key = ctypes.create_string_buffer(4)
    val = ctypes.create_string_buffer(8)
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0), 168)
    emu.mem.pin(key, val, attr)
    bpf = emu.bpf
    U, D, L = c.BPF_MAP_UPDATE_ELEM, c.BPF_MAP_DELETE_ELEM, c.BPF_MAP_LOOKUP_ELEM
    for i in range(64):                      # some elements, and the calls decoded
        key.raw = struct.pack("<I", i)
        assert bpf(U, attr, 32) == 0
    key.raw = struct.pack("<I", 7)
    if op in ("update", "lru-update", "array-update"):
        for _ in range(n):
            bpf(U, attr, 32)
    elif op == "update-new":
        key.raw = struct.pack("<I", 500)
        for _ in range(n):
            bpf(U, attr, 32)
            bpf(D, attr, 16)
    elif op == "delete":
        for _ in range(n):
            bpf(D, attr, 16)                 # ENOENT after the first: the op's lookup path
    elif op == "lookup":
        for _ in range(n):
            bpf(L, attr, 32)
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args and args[0] == "--src":
        sys.path.insert(0, args[1])
        args = args[2:]
    main(args[0], int(args[1]))
