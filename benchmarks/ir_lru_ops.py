"""Instructions per bpf() call, for before/after comparisons of the emulator's Python code.

Run under callgrind twice with different op counts; the difference of the two totals divided
by the difference of the counts is the cost of one op, free of start-up and set-up:

    for n in 2000 4000; do valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.$n \\
        .venv/bin/python benchmarks/ir_lru_ops.py update $n; done
    callgrind_annotate /tmp/cg.2000 | head -1 ...   (or: python benchmarks/ir_lru_ops.py --diff)

Ops: update (a decoded HASH replace on pinned buffers), update-new (insert then delete, two
ops), delete, lookup, lru-update, array-update; on a full 10,000-entry LRU_HASH: lru-evict
(a new key each op: the update evicts), lru-percpu-evict (the same with BPF_F_NO_COMMON_LRU),
lru-delete (a present key each op; n at most 10,000). ``--src DIR`` imports bpfemu from DIR;
``--full N`` makes the full LRU_HASH N entries (an LRU_HASH of 100,000 replaced by new keys
crosses the store's index dict being made again at its size; one of 10,000 does not).
"""
import ctypes
import struct
import sys


LRU_FULL = 10_000


def main(op: str, n: int) -> None:
    from bpfemu import Emulator
    from bpfemu.uapi import consts as c
    emu = Emulator(nr_cpus=2, seed=1)
    mt = {"lru-update": c.BPF_MAP_TYPE_LRU_HASH,
          "array-update": c.BPF_MAP_TYPE_ARRAY}.get(op, c.BPF_MAP_TYPE_HASH)
    full = op in ("lru-evict", "lru-percpu-evict", "lru-delete")
    if full:
        mt = c.BPF_MAP_TYPE_LRU_HASH
    flags = c.BPF_F_NO_COMMON_LRU if op == "lru-percpu-evict" else 0
    create = ctypes.create_string_buffer(
        struct.pack("<IIIII", mt, 4, 8, LRU_FULL if full else 1024, flags), 168)
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
    if full:
        for i in range(64, LRU_FULL):
            key.raw = struct.pack("<I", i)
            assert bpf(U, attr, 32) == 0
        pack = struct.Struct("<I").pack
        if op == "lru-delete":
            assert n <= LRU_FULL
            for i in range(n):
                key.raw = pack(LRU_FULL - 1 - i)     # the newest first: still there
                assert bpf(D, attr, 16) == 0
        else:
            for i in range(n):
                key.raw = pack(LRU_FULL + i)
                bpf(U, attr, 32)
        return
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
    if args and args[0] == "--full":
        LRU_FULL = int(args[1])
        args = args[2:]
    main(args[0], int(args[1]))
