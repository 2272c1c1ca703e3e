"""Instructions per batch call (callgrind Ir): a call's fixed cost against its per-element cost.

For each (map type, batch command, count) this runs a small program under callgrind twice,
on the same map prepared the same way, once making R batch calls of ``count`` elements and
once 2R; the difference of the totals divided by R is one call's cost. Measured at count 1
and count 256, the fixed part of a call is about cost(1) - (cost(256) - cost(1)) / 255.
Both runs have PYTHONHASHSEED=0: with random string hashes, the dict probes of the start-up
(the imports' compile and lookups) differ between the two runs by more than a call costs.
The caller's loop is bench_matrix's: one attr per command on pinned buffers, the count (and
the keys, for a hash update or delete) rewritten before each call.

Ops (key 4 B, value 8 B; hash maps of 65,536 max entries, arrays of 1,024):
  update   UPDATE_BATCH; hash types: new keys every call; arrays: indices 0..count-1
  lookup   LOOKUP_BATCH from the start (in_batch NULL), the same elements every call
  delete   DELETE_BATCH; hash types: keys in the map (filled before), new ones every call;
           arrays: ENOTSUPP
Run: python benchmarks/ir_batch_calls.py [--types hash,lru_hash,array] [--ops update,lookup,delete]
     [--counts 1,256] [-r 40] [--no-decoded-calls]
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(kind: str, op: str, count: int, calls: int, total_calls: int, decoded: bool) -> None:
    import ctypes
    import struct
    sys.path.insert(0, ROOT)
    from bpfemu import Emulator
    from bpfemu.uapi import consts as c
    emu = Emulator(nr_cpus=2, seed=1, decoded_calls=decoded)
    bpf = emu.bpf
    mt = getattr(c, f"BPF_MAP_TYPE_{kind.upper()}")
    is_array = "array" in kind
    entries = 1024 if is_array else 65536
    vsize = 8 * (2 if "percpu" in kind else 1)
    create = ctypes.create_string_buffer(struct.pack("<IIII", mt, 4, 8, entries), 168)
    fd = bpf(c.BPF_MAP_CREATE, create, 168)
    assert fd >= 0, fd
    n = max(count, 256)
    keys = ctypes.create_string_buffer(4 * n)
    values = ctypes.create_string_buffer(vsize * n)
    out = ctypes.create_string_buffer(4)
    kk, vv = ctypes.addressof(keys), ctypes.addressof(values)
    attr = ctypes.create_string_buffer(
        struct.pack("<QQQQII", 0, ctypes.addressof(out), kk, vv, count, fd), 168)
    emu.mem.pin(keys, values, out, attr)
    pack_keys = struct.Struct(f"<{count}I").pack_into
    upd = ctypes.create_string_buffer(168)
    if not is_array and op != "update":          # fill: the keys every delete call will take
        for start in range(0, total_calls * count if op == "delete" else 1024, n):
            cnt = min(n, (total_calls * count if op == "delete" else 1024) - start)
            struct.pack_into(f"<{cnt}I", keys, 0, *range(start, start + cnt))
            struct.pack_into("<QQQQII", upd, 0, 0, 0, kk, vv, cnt, fd)
            assert bpf(c.BPF_MAP_UPDATE_BATCH, upd, 56) == 0
    cmd = {"update": c.BPF_MAP_UPDATE_BATCH, "lookup": c.BPF_MAP_LOOKUP_BATCH,
           "delete": c.BPF_MAP_DELETE_BATCH}[op]
    pack_keys(keys, 0, *range(count))
    for i in range(calls):
        if not is_array and op != "lookup":
            pack_keys(keys, 0, *range(i * count, (i + 1) * count))
        struct.pack_into("<I", attr, 32, count)
        bpf(cmd, attr, 56)


def total_ir(path: str) -> int:
    out = subprocess.run(["callgrind_annotate", path], capture_output=True, text=True).stdout
    return int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))


def measure(kind: str, op: str, count: int, r: int, decoded: bool) -> float:
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for calls in (r, 2 * r):
            out = os.path.join(tmp, f"cg.{calls}")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, __file__, "--child", kind, op, str(count),
                            str(calls), str(2 * r), "1" if decoded else "0"],
                           check=True, capture_output=True,
                           env=dict(os.environ, PYTHONHASHSEED="0"))
            totals.append(total_ir(out))
    return (totals[1] - totals[0]) / r


if __name__ == "__main__":
    if sys.argv[1] == "--child":
        k, o, cnt, calls, total, dec = sys.argv[2:8]
        child(k, o, int(cnt), int(calls), int(total), dec == "1")
        sys.exit(0)
    p = argparse.ArgumentParser()
    p.add_argument("--types", default="hash,lru_hash,array")
    p.add_argument("--ops", default="update,lookup,delete")
    p.add_argument("--counts", default="1,256")
    p.add_argument("-r", type=int, default=40)
    p.add_argument("--no-decoded-calls", action="store_true")
    a = p.parse_args()
    counts = [int(x) for x in a.counts.split(",")]
    for kind in a.types.split(","):
        for op in a.ops.split(","):
            ir = {cnt: measure(kind, op, cnt, a.r, not a.no_decoded_calls) for cnt in counts}
            line = "  ".join(f"count {cnt}: {v:,.0f} Ir/call" for cnt, v in ir.items())
            if 1 in ir and len(ir) > 1:
                big = max(ir)
                per = (ir[big] - ir[1]) / (big - 1)
                line += f"  -> per element {per:,.0f}, fixed {ir[1] - per:,.0f}"
            print(f"{kind:10} {op:7} {line}", flush=True)
