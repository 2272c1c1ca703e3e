#!/usr/bin/env python3
"""Long differential fuzz runs (tests/fuzz_engine.py): the emulator against the live kernel,
needs root (bpf() permitted). Runs seed after seed until --calls calls are made, and prints
the figures: calls, divergences by kind, the kernel's results by errno, the first examples.

    sudo .venv/bin/python scripts/fuzz.py --calls 1000000 --seed 100
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from collections import Counter                                     # noqa: E402

from bpfemu import HostKernel                                        # noqa: E402
from tests.fuzz_engine import Fuzzer                                 # noqa: E402
from bpfemu.profile import host_possible_cpus                        # noqa: E402

PER_SEED = 20000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1, help="first seed; one per %d calls" % PER_SEED)
    a = ap.parse_args()
    reason = HostKernel.available()
    if reason:
        print(f"the live kernel's bpf() is not permitted here: {reason}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {0})                # LRU behaviour depends on the CPU
    kinds, rets, examples = Counter(), Counter(), []
    calls = 0
    seed = a.seed
    t0 = time.time()
    while calls < a.calls:
        f = Fuzzer(seed, host_possible_cpus())
        try:
            f.run(min(PER_SEED, a.calls - calls))
        finally:
            f.close()
        calls += f.calls
        kinds.update(f.kinds)
        rets.update(f.rets)
        examples += [f"seed {seed} {e}" for e in f.examples[:3]]
        print(f"seed {seed}: {f.calls} calls, {dict(f.kinds) or 'no divergences'}; total "
              f"{calls} calls in {time.time() - t0:.0f}s", flush=True)
        seed += 1
    print(f"\n{calls} calls (seeds {a.seed}..{seed - 1}), {time.time() - t0:.0f}s")
    print(f"divergences by kind: {dict(kinds) or 0}")
    print(f"kernel results: {dict(rets.most_common())}")
    for e in examples[:30]:
        print(" ", e)
    real = {k: n for k, n in kinds.items() if not k.startswith(("DEVIATION", "not compared"))}
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
