"""Replay throughput: the golden corpus on the emulator against the same corpus on the live kernel.

Both sides run the same replayer (bpfemu.trace.replay): read and validate each record, recreate
its memory, issue the call, compare every result byte. Only the backend differs: a fresh
Emulator over a simulated address space, or the live kernel over pages mapped at the recorded
addresses. The ratio emulator/kernel of replay throughput therefore includes the replay
machinery's own cost on both sides (shown separately: "read only" is decompress, parse and
validate); the time inside the backend's bpf() alone is reported too, with its own ratio.

    python benchmarks/bench_replay.py [TRACE ...] [--repeat N] [--no-kernel]

Timings are the best of --repeat runs (default 3). The kernel side needs root (bpf()).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu.host import HostKernel  # noqa: E402
from bpfemu.trace import open_trace, replay  # noqa: E402
from bpfemu.trace.run import GOLDEN_DIR  # noqa: E402


def read_only(paths) -> int:
    n = 0
    for p in paths:
        t = open_trace(p)
        for _ in t.records():
            n += 1
    return n


def replay_all(paths, backend):
    n = differing = relocated = calls = 0
    in_calls = 0.0
    for p in paths:
        rep = replay(p, backend, max_diffs=0)
        n += rep.records
        calls += rep.bpf_calls
        differing += rep.differing
        relocated += rep.relocated
        in_calls += rep.call_seconds
    return n, differing, relocated, calls, in_calls


def best(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="*", help="default: the golden corpus")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-kernel", action="store_true")
    a = ap.parse_args(argv)
    paths = a.traces or sorted(str(p) for p in GOLDEN_DIR.glob("*.jsonl.gz"))
    if not paths:
        print("no traces", file=sys.stderr)
        return 2
    size = sum(os.path.getsize(p) for p in paths)
    t_read, n = best(lambda: read_only(paths), a.repeat)
    print(f"corpus: {len(paths)} traces, {n:,} records, {size:,} bytes on disk")
    print(f"{'read only (gunzip, parse, validate)':38s} {n / t_read:10,.0f} records/s  ({t_read:.2f} s)")
    t_emu, (n_e, d_e, _, calls, in_e) = best(lambda: replay_all(paths, "emulator"), a.repeat)
    print(f"{'replay on the emulator':38s} {n_e / t_emu:10,.0f} records/s  ({t_emu:.2f} s, "
          f"{d_e} differ)")
    why = HostKernel.available()
    if a.no_kernel or why:
        print(f"replay on the kernel: skipped ({'--no-kernel' if a.no_kernel else why})")
        return 0
    t_k, (n_k, d_k, reloc, _, in_k) = best(lambda: replay_all(paths, "kernel"), a.repeat)
    print(f"{'replay on the live kernel':38s} {n_k / t_k:10,.0f} records/s  ({t_k:.2f} s, "
          f"{d_k} differ, {reloc} relocated)")
    print(f"ratio emulator/kernel, replay throughput: {(n_e / t_emu) / (n_k / t_k):.2f}")
    print(f"inside bpf() alone ({calls:,} calls): emulator {in_e / calls * 1e6:.1f} us/call, "
          f"kernel {in_k / calls * 1e6:.1f} us/call, ratio emulator/kernel (throughput) "
          f"{in_k / in_e:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
