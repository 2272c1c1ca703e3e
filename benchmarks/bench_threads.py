"""Throughput of one emulator shared by N threads, against one thread: wall-clock ops/s, CPU
time per op, and context switches per 1000 ops (a lock convoy shows as many voluntary
switches and more CPU per op). Each thread loops on its own attr (the decoded-call path);
--checked builds a new attr per call (the whole entry every time); --pin pins the buffers.

    python benchmarks/bench_threads.py --threads 1,8,1,8 --op update
"""
import argparse
import ctypes
import os
import resource
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import Emulator  # noqa: E402
from bpfemu.uapi import consts as c  # noqa: E402

OPS = {"update": c.BPF_MAP_UPDATE_ELEM, "lookup": c.BPF_MAP_LOOKUP_ELEM}


def run(emu, fd, cmd, nthreads: int, total: int, pin: bool, checked: bool) -> str:
    per = total // nthreads
    ready = threading.Barrier(nthreads + 1)

    def work():
        key, value = ctypes.c_uint32(0), ctypes.c_uint64(0)
        raw = struct.pack("<IxxxxQQQ", fd, ctypes.addressof(key), ctypes.addressof(value), 0)
        attr = ctypes.create_string_buffer(raw, 168)
        if pin:
            emu.mem.pin(key, value, attr)
        ready.wait()
        bpf = emu.bpf
        for j in range(per):
            key.value = j % 1000
            bpf(cmd, ctypes.create_string_buffer(raw, 168) if checked else attr, 32)

    threads = [threading.Thread(target=work) for _ in range(nthreads)]
    for t in threads:
        t.start()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    ready.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = per * nthreads
    return (f"{nthreads} threads: {n / wall:9.0f} ops/s, {cpu / n * 1e6:5.2f} us CPU/op, "
            f"{(r1.ru_nvcsw - r0.ru_nvcsw) / n * 1000:5.1f} voluntary and "
            f"{(r1.ru_nivcsw - r0.ru_nivcsw) / n * 1000:5.1f} involuntary switches/1000 ops")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,8,1,8")
    ap.add_argument("--ops", type=int, default=100000)
    ap.add_argument("--op", choices=sorted(OPS), default="update")
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--checked", action="store_true")
    a = ap.parse_args()
    emu = Emulator(seed=1)
    attr = ctypes.create_string_buffer(struct.pack("<IIII", c.BPF_MAP_TYPE_HASH, 4, 8, 100000), 168)
    fd = emu.bpf(c.BPF_MAP_CREATE, attr, 168)
    for n in map(int, a.threads.split(",")):
        print(a.op, "pinned" if a.pin else "unpinned", "checked" if a.checked else "decoded",
              run(emu, fd, OPS[a.op], n, a.ops, a.pin, a.checked), flush=True)
    emu.close_all()


if __name__ == "__main__":
    main()
