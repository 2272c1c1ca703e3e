"""Replay throughput: the golden corpus on the emulator against the same corpus on the live kernel.

Both sides run the same replayer (bpfemu.trace.replay): read and validate each record, recreate
its memory, issue the call, compare every result byte. Only the backend differs: a fresh
Emulator over a simulated address space, or the live kernel over pages mapped at the recorded
addresses. The ratio emulator/kernel of replay throughput therefore includes the replay
machinery's own cost on both sides (shown separately: "read only" is decompress, parse and
validate); the time inside the backend's bpf() alone is reported too, with its own ratio.

    python benchmarks/bench_replay.py [TRACE ...] [--rounds N] [--no-kernel]

The two sides take turns trace by trace, the one going first alternating, in each of --rounds
rounds (default 5); each ratio is taken within one round and the median of the rounds shown,
so that the machine's drift in speed (which swung the ratio from 1.5 to 3.7 when one side ran
after the other) hits both alike. The kernel side needs root (bpf()).
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


def replay_one(path, backend):
    """(records, differing, relocated, bpf calls, seconds inside bpf(), wall seconds)."""
    t0 = time.perf_counter()
    rep = replay(path, backend, max_diffs=0)
    wall = time.perf_counter() - t0
    return rep.records, rep.differing, rep.relocated, rep.bpf_calls, rep.call_seconds, wall


def interleaved_round(paths, backends, first):
    """One round: every trace on every backend, the backends taking turns trace by trace,
    the one that goes first rotating from trace to trace (starting at `first`), so that the
    machine's drift in speed hits both alike. {backend: [records, differing, relocated,
    calls, seconds in bpf(), wall seconds]} summed over the corpus."""
    tot = {b: [0, 0, 0, 0, 0.0, 0.0] for b in backends}
    order = list(backends[first:]) + list(backends[:first])
    for p in paths:
        for b in order:
            for i, v in enumerate(replay_one(p, b)):
                tot[b][i] += v
        order.append(order.pop(0))
    return tot


def _median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="*", help="default: the golden corpus")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-kernel", action="store_true")
    a = ap.parse_args(argv)
    paths = a.traces or sorted(str(p) for p in GOLDEN_DIR.glob("*.jsonl.gz"))
    if not paths:
        print("no traces", file=sys.stderr)
        return 2
    size = sum(os.path.getsize(p) for p in paths)
    reads = []
    for _ in range(a.rounds):
        t0 = time.perf_counter()
        n = read_only(paths)
        reads.append(time.perf_counter() - t0)
    t_read = _median(reads)
    print(f"corpus: {len(paths)} traces, {n:,} records, {size:,} bytes on disk")
    print(f"{'read only (gunzip, parse, validate)':38s} {n / t_read:10,.0f} records/s  "
          f"({t_read:.2f} s, median of {a.rounds})")
    why = HostKernel.available()
    backends = ["emulator"] if a.no_kernel or why else ["emulator", "kernel"]
    rounds = [interleaved_round(paths, backends, r % len(backends)) for r in range(a.rounds)]

    def line(name, b):
        recs, diff, reloc = rounds[0][b][:3]
        wall = _median([r[b][5] for r in rounds])
        in_call = _median([r[b][4] / r[b][3] for r in rounds])
        print(f"{name:38s} {recs / wall:10,.0f} records/s  ({wall:.2f} s, {diff} differ, "
              f"{reloc} relocated; {in_call * 1e6:.1f} us per call inside bpf())")
    line("replay on the emulator", "emulator")
    if len(backends) == 1:
        print(f"replay on the kernel: skipped ({'--no-kernel' if a.no_kernel else why})")
        return 0
    line("replay on the live kernel", "kernel")
    # Throughput ratio emulator/kernel: time on the kernel / time on the emulator, in one round.
    walls = sorted(r["kernel"][5] / r["emulator"][5] for r in rounds)
    calls = sorted((r["kernel"][4] / r["kernel"][3]) / (r["emulator"][4] / r["emulator"][3])
                   for r in rounds)
    print(f"throughput ratio emulator/kernel (above 1: the emulator is faster), the sides "
          f"interleaved trace by trace, median of {a.rounds} rounds: replay "
          f"{_median(walls):.2f} (rounds {walls[0]:.2f}-{walls[-1]:.2f}); inside bpf() alone "
          f"{_median(calls):.2f} ({calls[0]:.2f}-{calls[-1]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
