"""`bpfemu run` against the live kernel, in one run: a C client's bpf_map_update_elem loop
and lookup loop (tests/intercept/ctool.c, `bench N`: raw syscalls, attr reused) timed by the
client itself, on the kernel and under the supervisor, in turns.

Printed per round and as medians: wall time per call as the client sees it, and the
supervisor's CPU time per call (user + system, from getrusage: the supervisor runs in this
process). On a busy machine the wall time mostly measures waiting for a CPU; the CPU time
does not. With --checked, a third side serves every call the checked way (decoded calls off:
Emulator(decoded_calls=False), so neither the in-process nor the notified decoded calls run),
in the same rounds. Run: python benchmarks/bench_intercept.py [--calls N] [--rounds R]
[--checked] [--profile]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bpfemu import Emulator, HostKernel  # noqa: E402
from bpfemu.intercept.run import spawn  # noqa: E402
from bpfemu.intercept.supervisor import Supervisor  # noqa: E402

CTOOL_C = os.path.join(os.path.dirname(__file__), "..", "tests", "intercept", "ctool.c")


def build(dirname: str) -> str:
    out = os.path.join(dirname, "ctool")
    subprocess.run([shutil.which("cc") or "gcc", "-O2", "-o", out, CTOOL_C, "-lpthread"],
                   check=True)
    return out


def parse(text: str) -> dict:
    return {k: float(v) for k, v in (line.split() for line in text.splitlines())}


def on_kernel(ctool: str, n: int) -> dict:
    return parse(subprocess.run([ctool, "bench", str(n)], capture_output=True, text=True,
                                check=True).stdout)


def supervised(ctool: str, n: int, profile=None, decoded: bool = True) -> dict:
    proc, listener = spawn([ctool, "bench", str(n)], stdout=subprocess.PIPE, text=True)
    sup = Supervisor(Emulator(decoded_calls=decoded), listener)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        if profile is not None:
            profile.runcall(sup.serve)
        else:
            sup.serve()
    finally:
        os.close(listener)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out = parse(proc.stdout.read())
    proc.wait()
    calls = sup.calls
    out["sup_user_us"] = (r1.ru_utime - r0.ru_utime) / calls * 1e6
    out["sup_sys_us"] = (r1.ru_stime - r0.ru_stime) / calls * 1e6
    out["decoded_share"] = sup.decoded.served / calls
    out["sync_wakeup"] = float(sup.sync_wakeup)         # NOTIF_SET_FLAGS(SYNC_WAKE_UP) took
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100_000, help="updates (and lookups) per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile one supervised run")
    ap.add_argument("--checked", action="store_true",
                    help="also run the supervisor with decoded calls off")
    a = ap.parse_args()
    kernel_ok = HostKernel.available() is None
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        ctool = build(d)
        if a.profile:
            import cProfile
            import pstats
            prof = cProfile.Profile()
            supervised(ctool, a.calls, prof)
            pstats.Stats(prof).sort_stats("tottime").print_stats(20)
            return 0
        sides = ["kernel", "bpfemu run"] + (["checked"] if a.checked else [])
        rows = {w: [] for w in sides}
        for i in range(a.rounds):
            order = sides if i % 2 == 0 else sides[::-1]
            for which in order:
                if which == "kernel" and not kernel_ok:
                    continue
                if which == "kernel":
                    r = on_kernel(ctool, a.calls)
                else:
                    r = supervised(ctool, a.calls, decoded=which == "bpfemu run")
                rows[which].append(r)
                extra = (f"  supervisor CPU {r['sup_user_us'] + r['sup_sys_us']:.1f} us/call "
                         f"(user {r['sup_user_us']:.1f}, sys {r['sup_sys_us']:.1f}; "
                         f"{r['decoded_share']:.0%} decoded, SYNC_WAKE_UP "
                         f"{'on' if r['sync_wakeup'] else 'OFF'})"
                         if "sup_user_us" in r else "")
                print(f"round {i + 1} {which:10s} update {r['update_ns'] / 1000:7.2f} us  "
                      f"lookup {r['lookup_ns'] / 1000:7.2f} us{extra}", flush=True)
    print(f"\nmedians of {a.rounds} rounds, {a.calls:,} calls each (load average "
          f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
          f"{os.cpu_count()} CPUs)")
    med = {w: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for w, rs in rows.items() if rs}
    for w, m in med.items():
        line = f"  {w:10s} update {m['update_ns'] / 1000:7.2f} us  lookup {m['lookup_ns'] / 1000:7.2f} us"
        if "sup_user_us" in m:
            line += f"  supervisor CPU {m['sup_user_us'] + m['sup_sys_us']:.1f} us/call"
        print(line)
    if "kernel" in med:
        k, e = med["kernel"], med["bpfemu run"]
        print(f"  ratio      update {e['update_ns'] / k['update_ns']:.1f}x  "
              f"lookup {e['lookup_ns'] / k['lookup_ns']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
