"""Instructions per call of the LibBpf and Map layers, for before/after comparisons.

Run under callgrind twice with different call counts; the difference of the two totals
divided by the difference of the counts is one call, free of start-up and set-up (the
kernel's own work is not counted: over HostKernel it is the layer and ctypes alone):

    for n in 4000 12000; do PYTHONHASHSEED=0 valgrind --tool=callgrind \\
        --callgrind-out-file=/tmp/cg.$n .venv/bin/python benchmarks/ir_layer_ops.py emu lookup $n
    done                      # Ir per call = (Ir at 12000 - Ir at 4000) / 8000

BACKEND: emu or host. OP: lookup, update, delete (LibBpf, ctypes key and value), map_get,
map_set (Map with ints=True), raw_lookup, raw_update (the bpf() loop under them: one attr,
pinned buffers on an emulator); lookup_batch, raw_lookup_batch (calls of 64 elements),
lookup_batch_pinned (the caller's arrays pinned by the caller). A HASH map of 1,024
entries, filled; keys cycle over it. The README's figures use N = 2000 and 6000.
"""
import ctypes
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main(which: str, op: str, n: int, pin_all: bool = False) -> None:
    from bpfemu import Emulator, HostKernel
    from bpfemu.libbpf import LibBpf
    from bpfemu.maps_api import Map
    from bpfemu.uapi import consts as c
    b = Emulator(seed=1) if which == "emu" else HostKernel()
    lib = LibBpf(b)
    fd = lib.bpf_map_create(c.BPF_MAP_TYPE_HASH, "m", 4, 8, 1024)
    key, value = ctypes.c_uint32(), ctypes.c_uint64(7)
    for i in range(1024):
        key.value = i
        lib.bpf_map_update_elem(fd, key, value)
    if op in ("lookup", "update"):
        f = lib.bpf_map_lookup_elem if op == "lookup" else lib.bpf_map_update_elem
        for i in range(n):
            key.value = i & 1023
            f(fd, key, value)
    elif op == "delete":               # a delete and the update that puts the key back
        for i in range(n):
            key.value = i & 1023
            lib.bpf_map_delete_elem(fd, key)
            lib.bpf_map_update_elem(fd, key, value)
    elif op in ("map_get", "map_set"):
        m = Map.open(lib, fd, ctypes.c_uint32, ctypes.c_uint64, ints=True)
        if op == "map_get":
            for i in range(n):
                m[i & 1023]
        else:
            for i in range(n):
                m[i & 1023] = i
    elif op in ("raw_lookup", "raw_update"):
        kb, vb = ctypes.create_string_buffer(4), ctypes.create_string_buffer(8)
        if which == "emu":
            b.mem.pin(kb, vb)
        attr = ctypes.create_string_buffer(168)
        struct.pack_into("<IIQQQ", attr, 0, fd, 0, ctypes.addressof(kb), ctypes.addressof(vb), 0)
        pack = struct.Struct("<I").pack_into
        cmd = c.BPF_MAP_LOOKUP_ELEM if op == "raw_lookup" else c.BPF_MAP_UPDATE_ELEM
        bpf = b.bpf
        for i in range(n):
            pack(kb, 0, i & 1023)
            bpf(cmd, attr, 32)
    elif op in ("lookup_batch", "raw_lookup_batch"):
        # n LOOKUP_BATCH calls of 64 elements, walking the map again and again.
        keys, values = (ctypes.c_uint32 * 64)(), (ctypes.c_uint64 * 64)()
        count, token_in, token_out = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.c_uint32()
        attr = ctypes.create_string_buffer(168)
        if (op == "raw_lookup_batch" or pin_all) and which == "emu":
            b.mem.pin(keys, values, token_in, token_out, attr)
        first = True
        for _ in range(n):
            count.value = 64
            if op == "lookup_batch":
                ret = lib.bpf_map_lookup_batch(fd, None if first else token_in, token_out,
                                               keys, values, count)
            else:
                struct.pack_into("<QQQQII", attr, 0, 0 if first else ctypes.addressof(token_in),
                                 ctypes.addressof(token_out), ctypes.addressof(keys),
                                 ctypes.addressof(values), 64, fd)
                ret = b.bpf(c.BPF_MAP_LOOKUP_BATCH, attr, 56)
            token_in.value = token_out.value
            first = ret != 0
    else:
        raise SystemExit(f"unknown op {op!r}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2].removesuffix("_pinned"), int(sys.argv[3]),
         sys.argv[2].endswith("_pinned"))
