"""One map shared by 1, 2, 4, 8 threads: the emulator (buffers unpinned and pinned) against the
live kernel, interleaved in one run, medians of rounds.

Each thread loops on its own attr (the decoded-call path; --checked builds a new attr per
call: the whole entry every time), writing keys 0..999 of one HASH map. Printed per backend
and thread count: ops/s (all threads together), CPU time per op, voluntary and involuntary
context switches per 1000 ops (a lock convoy shows as about one switch per op), medians of
the rounds; the worst round's ops/s (a convoy, once started, lasts the whole measurement, so
it shows in some rounds and not others, more often on an idle machine); the median ops/s
against the same backend's with the first thread count, and against the kernel's with as
many threads.

``floor`` (--floor) is the leanest emulator of the same design (bench_floor.py's, made for
threads: a dict behind the call made last, the emulator's lock for an update, pinned
buffers): what the GIL leaves to any Python emulator, with nothing of bpfemu's semantics.

    python benchmarks/bench_threads.py                       # update and lookup, 5 rounds
    python benchmarks/bench_threads.py --op update --threads 1,8 --rounds 3 --floor
"""
import argparse
import ctypes
import os
import resource
import statistics
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import Emulator, HostKernel  # noqa: E402
from bpfemu import emu_lock  # noqa: E402
from bpfemu.uapi import consts as c  # noqa: E402

OPS = {"update": c.BPF_MAP_UPDATE_ELEM, "lookup": c.BPF_MAP_LOOKUP_ELEM}
KEYS = 1000


class FloorEmulator:
    """The leanest emulator of bpfemu's design, shared by threads: the call made last is
    tried first, then a dict of decoded calls under the attr; an update takes the lock (the
    emulator's kind, taken as fastpath.py takes it), a lookup none; one dict operation and
    one copy through pinned buffers. No checks, no buckets, no errors."""

    def __init__(self):
        self.lock = emu_lock.new_lock()
        self.elems = {}
        self.decoded = {}
        self.last = (None, None, None, None, None, None)
        self.mem = self                     # pin() is a no-op: every buffer is a view here
        # Looked up once: a getattr() that misses costs an AttributeError every call.
        self.wait_turn = getattr(emu_lock, "wait_turn", None)    # not in bpfemu before it

    def pin(self, *objs) -> None:
        pass

    def decode(self, cmd: int, attr, key, value) -> None:
        elems, key_view = self.elems, memoryview(key).cast("B")
        value_view = memoryview(value).cast("B")
        value_buf = (ctypes.c_char * len(value_view)).from_buffer(value_view)

        def update():
            elems[key_view.tobytes()] = value_view.tobytes()
            return 0

        def lookup():
            value = elems.get(key_view.tobytes())
            if value is None:
                return -2
            value_buf.raw = value
            return 0
        run = update if cmd == c.BPF_MAP_UPDATE_ELEM else lookup
        self.decoded[id(attr) << 6 | cmd] = (attr, cmd, 32, attr.raw, run,
                                            cmd != c.BPF_MAP_UPDATE_ELEM)

    def bpf(self, cmd: int, attr, size: int) -> int:
        last_attr, last_cmd, last_size, last_raw, run, lockless = self.last
        if (last_attr is attr and last_cmd == cmd and last_size == size
                and attr.raw == last_raw):
            if lockless:
                return run()
            lock, wait_turn = self.lock, self.wait_turn
            if wait_turn is not None and not lock._get_value():
                wait_turn(lock)
            with lock:
                return run()
        call = self.decoded[id(attr) << 6 | cmd]
        self.last = call
        return self.bpf(cmd, attr, size)

    def close_all(self) -> None:
        pass


def run(backend, fd, cmd, nthreads: int, total: int, pin: bool, checked: bool) -> tuple:
    """(ops/s, CPU us/op, voluntary and involuntary switches per 1000 ops)."""
    per = total // nthreads
    ready = threading.Barrier(nthreads + 1)

    def work():
        key, value = ctypes.c_uint32(0), ctypes.c_uint64(0)
        raw = struct.pack("<IxxxxQQQ", fd, ctypes.addressof(key), ctypes.addressof(value), 0)
        attr = ctypes.create_string_buffer(raw, 168)
        if pin:
            backend.mem.pin(key, value, attr)
        if isinstance(backend, FloorEmulator):
            backend.decode(cmd, attr, key, value)
        ready.wait()
        bpf = backend.bpf
        for j in range(per):
            key.value = j % KEYS
            bpf(cmd, ctypes.create_string_buffer(raw, 168) if checked else attr, 32)

    threads = [threading.Thread(target=work) for _ in range(nthreads)]
    for t in threads:
        t.start()
    ready.wait()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0, c0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = per * nthreads
    return (n / wall, cpu / n * 1e6, (r1.ru_nvcsw - r0.ru_nvcsw) / n * 1000,
            (r1.ru_nivcsw - r0.ru_nivcsw) / n * 1000)


def make_map(backend) -> int:
    attr = ctypes.create_string_buffer(struct.pack("<IIII", c.BPF_MAP_TYPE_HASH, 4, 8, 100000), 168)
    fd = backend.bpf(c.BPF_MAP_CREATE, attr, 168) if not isinstance(backend, FloorEmulator) else 0
    key, value = ctypes.c_uint32(0), ctypes.c_uint64(7)
    elem = ctypes.create_string_buffer(
        struct.pack("<IxxxxQQQ", fd, ctypes.addressof(key), ctypes.addressof(value), 0), 168)
    for k in range(KEYS):                  # lookups find every key
        key.value = k
        if isinstance(backend, FloorEmulator):
            backend.elems[bytes(key)] = bytes(value)
        else:
            assert backend.bpf(c.BPF_MAP_UPDATE_ELEM, elem, 32) == 0
    return fd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2,4,8")
    ap.add_argument("--ops", type=int, default=40000, help="calls per measurement")
    ap.add_argument("--op", default="update,lookup")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--checked", action="store_true")
    ap.add_argument("--floor", action="store_true", help="also the leanest emulator")
    ap.add_argument("--no-kernel", action="store_true")
    a = ap.parse_args()
    backends = [("emu unpinned", Emulator(seed=1), False), ("emu pinned", Emulator(seed=1), True)]
    if not a.no_kernel:
        reason = HostKernel.available()
        if reason:
            print(f"live kernel not available ({reason}): emulator only")
        else:
            backends.append(("kernel", HostKernel(), False))
    if a.floor:
        backends.append(("floor", FloorEmulator(), True))
    fds = {name: make_map(b) for name, b, _ in backends}
    ops = a.op.split(",")
    counts = [int(n) for n in a.threads.split(",")]
    results: dict = {}
    load0 = os.getloadavg()[0]
    for _ in range(a.rounds):           # interleaved: every backend in every round
        for op in ops:
            for n in counts:
                for name, backend, pin in backends:
                    r = run(backend, fds[name], OPS[op], n, a.ops, pin, a.checked)
                    results.setdefault((op, n, name), []).append(r)
    load1 = os.getloadavg()[0]
    print(f"{a.rounds} rounds of {a.ops} calls, {'checked' if a.checked else 'decoded'} calls, "
          f"{os.cpu_count()} CPUs, load average {load0:.1f} before, {load1:.1f} after")
    print(f"{'op':7} {'backend':13} {'thr':>3} {'ops/s':>9} {'us CPU/op':>9} {'vcsw/1k':>8} "
          f"{'ivcsw/1k':>8} {'worst':>9} {'vs 1 thr':>8} {'vs kernel':>9}")
    for op in ops:
        for name, _, _ in backends:
            for n in counts:
                rs = results[(op, n, name)]
                med = [statistics.median(x) for x in zip(*rs)]
                one = statistics.median(r[0] for r in results[(op, counts[0], name)])
                kern = results.get((op, n, "kernel"))
                vs_kernel = (f"{med[0] / statistics.median(r[0] for r in kern):9.2f}"
                             if kern and name != "kernel" else f"{'':9}")
                worst = min(r[0] for r in rs)
                print(f"{op:7} {name:13} {n:3} {med[0]:9.0f} {med[1]:9.2f} {med[2]:8.1f} "
                      f"{med[3]:8.1f} {worst:9.0f} {med[0] / one:8.2f} {vs_kernel}")
    for _, b, _ in backends:
        b.close_all()


if __name__ == "__main__":
    main()
