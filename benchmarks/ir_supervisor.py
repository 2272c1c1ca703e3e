"""Instructions per served call of `bpfemu run`'s supervisor (callgrind Ir), independent of load.

The supervisor (this process, under ``valgrind --tool=callgrind``) serves the C client's
update and lookup loops (tests/intercept/ctool.c `bench N`: N updates of new keys, then N
lookups, raw syscalls, one attr reused); the client runs outside valgrind. Two runs, with
N = K and N = 3K: the difference of their totals divided by the 4K extra calls is the
supervisor's user-space instructions per call (system calls' kernel work is not counted),
every one-off cost (start-up, imports, the map's creation, the first checked calls)
cancelling out. ``--annotate`` prints, per C function (callgrind_annotate, exclusive Ir), the
same difference per call: where the interpreter's instructions go.

``--updates``: the client runs `ctool updates N` (N updates only) instead, so that the
update's own count is known and the lookup's follows (twice the bench figure less it).
``--replaces``: `ctool replaces N` (N updates of one key of a preallocated HASH map:
replaces, each taking a CPU's spare element; the caller's CPU, /proc/<tid>/stat, is read
only once a program was handed a pointer into an element, which this loop never is).
``--percpu-updates``: `ctool percpu_updates N` (N updates of new keys of a PERCPU_HASH map).

Run: python benchmarks/ir_supervisor.py [-k 2000] [--annotate]
[--updates | --replaces | --percpu-updates]
Needs valgrind and a C compiler.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def child(ctool: str, loop: str, n: int) -> None:
    """The measured program: serve one `ctool bench n` from an Emulator."""
    sys.path.insert(0, ROOT)
    from bpfemu import Emulator
    from bpfemu.intercept.run import spawn
    from bpfemu.intercept.supervisor import Supervisor

    proc, listener = spawn([ctool, loop, str(n)], stdout=subprocess.DEVNULL)
    sup = Supervisor(Emulator(seed=1), listener)
    try:
        sup.serve()
    finally:
        os.close(listener)
    assert proc.wait() == 0
    assert sup.calls >= (2 * n if loop == "bench" else n), sup.calls


def run_callgrind(ctool: str, loop: str, n: int, tmp: str) -> tuple[int, str]:
    """(total Ir, output file) of the supervisor serving `ctool <loop> n`."""
    out = os.path.join(tmp, f"cg.{n}.out")
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, os.path.abspath(__file__), "--child", ctool, loop, str(n)],
                   check=True, env=dict(os.environ, PYTHONHASHSEED="0"),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1)), out
    raise RuntimeError("no totals in callgrind's output")


def per_function(out: str) -> dict:
    """Exclusive Ir per C function of one callgrind output."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", out],
                          check=True, capture_output=True, text=True).stdout
    ir = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S.*?)(?: \[.*\])?$", line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2).rsplit("/", 1)[-1]
            ir[name] = ir.get(name, 0) + int(m.group(1).replace(",", ""))
    return ir


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", type=int, default=2_000, help="calls of each loop in the shorter run")
    ap.add_argument("--annotate", action="store_true")
    ap.add_argument("--updates", action="store_true", help="serve `ctool updates N` (updates only)")
    ap.add_argument("--replaces", action="store_true",
                    help="serve `ctool replaces N` (updates of one key only)")
    ap.add_argument("--percpu-updates", action="store_true",
                    help="serve `ctool percpu_updates N` (new keys of a PERCPU_HASH map)")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    sys.path.insert(0, ROOT)
    from benchmarks.bench_intercept import build
    with tempfile.TemporaryDirectory() as tmp:
        ctool = build(tmp)
        k = args.k
        loop = ("updates" if args.updates else "replaces" if args.replaces
                else "percpu_updates" if args.percpu_updates else "bench")
        extra = 4 * k if loop == "bench" else 2 * k       # calls of the longer run's extra
        short, short_out = run_callgrind(ctool, loop, k, tmp)
        long_, out = run_callgrind(ctool, loop, 3 * k, tmp)
        print(f"supervisor Ir per served call ({loop}): ({long_:,} - {short:,}) / {extra:,} = "
              f"{(long_ - short) / extra:,.0f}  ({sys.implementation.name} "
              f"{sys.version.split()[0]})")
        if args.annotate:
            a, b = per_function(short_out), per_function(out)
            diff = {f: (b.get(f, 0) - a.get(f, 0)) / extra for f in set(a) | set(b)}
            for f, ir in sorted(diff.items(), key=lambda x: -x[1])[:int(os.environ.get("IR_TOP", "40"))]:
                print(f"{ir:9,.0f}  {f}")


if __name__ == "__main__":
    main()
