"""Instructions per element of the batch commands (callgrind Ir), for before/after comparisons
of the emulator's Python code on a busy machine (ir_per_op.py's method).

Each measurement is two runs under callgrind on the same map prepared the same way (N keys
filled with element updates, or none): one that then runs the batch op over N elements in
batches of 256 (pinned buffers), one that stops before it. The difference divided by N is
the op's cost per element, the batch's fixed costs spread over its 256 elements:

    python benchmarks/ir_batch_ops.py --run hash update 10240      # both runs, prints Ir/elem

Map types: hash, percpu_hash, lru_hash, lru_percpu_hash, array, percpu_array (key 4 B, value
8 B per CPU, max_entries 2N; arrays N). Ops:
  update   UPDATE_BATCH of keys 0..N-1: new keys into an empty hash map; arrays: every index
  replace  UPDATE_BATCH of keys 0..N-1, all in the map already (hash types)
  lookup   LOOKUP_BATCH over the whole map (N filled, none linked yet): the columnar store
           hashes them at the first batch (their batch order; linked lists elsewhere)
  lookup_linked  the same on a map whose elements were linked before (the store's sync)
  delete   DELETE_BATCH of keys 0..N-1, all in the map (hash types)
  reuse    UPDATE_BATCH of new keys N..2N-1 after keys 0..N-1 were filled and deleted: the
           new elements reuse the freed ones (hash types)
  *_linked the op on a map whose filled elements were linked first (the store's sync)
  lookup_and_delete  LOOKUP_AND_DELETE_BATCH over the whole map (hash types)
Add --unpinned for unpinned buffers, --store simple for the simple store.
"""
import ctypes
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = 256


def child(kind: str, op: str, n: int, measure: bool, pinned: bool, store: str) -> None:
    sys.path.insert(0, ROOT)
    from bpfemu import Emulator
    from bpfemu.uapi import consts as c
    emu = Emulator(nr_cpus=2, seed=1, store=store)
    mt = getattr(c, f"BPF_MAP_TYPE_{kind.upper()}")
    vsize = 8 * (2 if "percpu" in kind else 1)
    entries = n if "array" in kind else 2 * n
    create = ctypes.create_string_buffer(struct.pack("<IIII", mt, 4, 8, entries), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0, fd
    bpf = emu.bpf
    key = ctypes.create_string_buffer(4)
    val = ctypes.create_string_buffer(vsize)
    attr = ctypes.create_string_buffer(
        struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0), 168)
    keys = ctypes.create_string_buffer(4 * BATCH)
    values = ctypes.create_string_buffer(vsize * BATCH)
    tin = ctypes.create_string_buffer(4)
    tout = ctypes.create_string_buffer(4)
    kk, vv = ctypes.addressof(keys), ctypes.addressof(values)
    ti, to = ctypes.addressof(tin), ctypes.addressof(tout)
    upd = ctypes.create_string_buffer(struct.pack("<QQQQII", 0, 0, kk, vv, BATCH, fd), 168)
    dele = ctypes.create_string_buffer(struct.pack("<QQQQII", 0, 0, kk, 0, BATCH, fd), 168)
    first = ctypes.create_string_buffer(struct.pack("<QQQQII", 0, to, kk, vv, BATCH, fd), 168)
    nxt = ctypes.create_string_buffer(struct.pack("<QQQQII", ti, to, kk, vv, BATCH, fd), 168)
    if pinned:
        emu.mem.pin(key, val, attr, keys, values, tin, tout, upd, dele, first, nxt)
    if op != "update":
        pack = struct.Struct("<I").pack_into
        for i in range(n):
            pack(key, 0, i)
            assert bpf(c.BPF_MAP_UPDATE_ELEM, attr, 32) == 0
        if op.endswith("_linked"):              # the filled keys linked into their lists
            store = emu.map_of(fd).store
            if hasattr(store, "sync"):          # the columnar store links them late
                store.sync()
            op = op[:-len("_linked")]
        if op == "reuse":
            delete = ctypes.create_string_buffer(
                struct.pack("<IIQ", fd, 0, ctypes.addressof(key)), 168)
            for i in range(n):
                pack(key, 0, i)
                assert bpf(c.BPF_MAP_DELETE_ELEM, delete, 16) == 0
    if not measure:
        return
    if op in ("update", "replace", "delete", "reuse"):
        cmd, a = ((c.BPF_MAP_DELETE_BATCH, dele) if op == "delete"
                  else (c.BPF_MAP_UPDATE_BATCH, upd))
        base = n if op == "reuse" else 0
        for start in range(base, base + n, BATCH):
            cnt = min(BATCH, base + n - start)
            struct.pack_into(f"<{cnt}I", keys, 0, *range(start, start + cnt))
            struct.pack_into("<I", a, 32, cnt)
            assert bpf(cmd, a, 56) == 0
        return
    cmd = c.BPF_MAP_LOOKUP_BATCH if op == "lookup" else c.BPF_MAP_LOOKUP_AND_DELETE_BATCH
    a = first
    got = 0
    while True:
        struct.pack_into("<I", a, 32, BATCH)
        ret = bpf(cmd, a, 56)
        got += struct.unpack_from("<I", a, 32)[0]
        ctypes.memmove(tin, tout, 4)
        a = nxt
        if ret != 0:
            break
    assert got == n, (got, n)


def total_ir(path: str) -> int:
    out = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
    return int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))


def measure(kind: str, op: str, n: int, extra: list) -> float:
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in ("0", "1"):
            out = os.path.join(tmp, f"cg.{m}")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, __file__, "--child", kind, op, str(n), m] + extra,
                           check=True, capture_output=True)
            totals.append(total_ir(out))
    return (totals[1] - totals[0]) / n


if __name__ == "__main__":
    args = sys.argv[1:]
    pinned = "--unpinned" not in args
    store = "simple" if "--store" in args and args[args.index("--store") + 1] == "simple" \
        else "columnar"
    extra = [a for a in ("--unpinned",) if a in args] + (["--store", store])
    if args[0] == "--child":
        child(args[1], args[2], int(args[3]), args[4] == "1", pinned, store)
    else:
        kind, op, n = args[1], args[2], int(args[3])
        print(f"{kind} {op} n={n} {'pinned' if pinned else 'unpinned'} {store}: "
              f"{measure(kind, op, n, extra):.0f} Ir per element")
