"""The ``bpfemu`` command: record, replay, dump and conform.

    bpfemu conform                      the emulator against the kernel (or the golden corpus)
    bpfemu record SCENARIO -o TRACE     run a scenario on the live kernel (or the emulator)
    bpfemu replay TRACE...              replay traces onto the emulator (or the kernel); diff
    bpfemu dump TRACE                   the strace-style listing of a trace
    bpfemu scenarios                    the built-in scenarios

Exit status: 0 success (replay/conform: nothing differs), 1 differences, 2 bad input (one line
naming the file and record on stderr).
"""
import argparse
import os
import sys

from .trace.format import TraceError

EXIT_OK, EXIT_DIFF, EXIT_BAD = 0, 1, 2


def _err(msg: str) -> int:
    sys.stderr.write(f"bpfemu: {msg}\n")
    return EXIT_BAD


def cmd_record(a) -> int:
    from .trace.run import ScenarioError, load_scenario, record_scenario
    from .trace.scenarios import Interference
    try:
        name, fn = load_scenario(a.scenario)
    except ScenarioError as e:
        return _err(str(e))
    if a.backend == "kernel":
        from .host import HostKernel
        why = HostKernel.available()
        if why:
            return _err(f"the live kernel's bpf() is not usable here ({why}); "
                        "use --backend emulator")
    try:
        record_scenario(a.scenario, a.output, backend=a.backend, cpus=a.cpus, bpffs_root=a.bpffs,
                        profile=a.profile)
    except ScenarioError as e:
        return _err(str(e))
    except Interference as e:
        return _err(f"{name}: other processes interfered on every attempt: {e}")
    except OSError as e:
        return _err(f"{a.output}: {e}")
    except Exception as e:                      # the scenario itself failed
        sys.stderr.write(f"bpfemu: scenario {name} failed: {type(e).__name__}: {e} "
                         f"(the trace up to that call is in {a.output})\n")
        return EXIT_DIFF
    from .trace.format import read_all
    _, recs, _ = read_all(a.output)
    print(f"{a.output}: {len(recs)} records of {name} on the {a.backend}")
    return EXIT_OK


def cmd_replay(a) -> int:
    from .trace.replay import print_progress_factory, replay
    if a.backend == "kernel":
        from .host import HostKernel
        why = HostKernel.available()
        if why:
            return _err(f"the live kernel's bpf() is not usable here ({why})")
    total_diff = 0
    reports = []
    for path in a.traces:
        prog = print_progress_factory(sys.stderr, os.path.basename(path)) if not a.quiet else None
        try:
            rep = replay(path, a.backend, max_diffs=a.max_diffs, progress=prog,
                         profile=a.profile)
        except TraceError as e:
            if prog:
                sys.stderr.write("\r\033[K")
            return _err(str(e))
        if prog:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
        reports.append(rep)
        total_diff += rep.differing
        for d in rep.differences:
            print(d)
        if rep.differing > len(rep.differences):
            print(f"... and {rep.differing - len(rep.differences)} more differing records "
                  f"(--max-diffs {rep.differing} shows them)")
        for w in rep.warnings:
            sys.stderr.write(f"bpfemu: warning: {w}\n")
        rate = rep.records / rep.seconds if rep.seconds else 0
        print(f"{rep.summary()} [{rep.seconds:.2f}s, {rate:,.0f} records/s]")
    if len(reports) > 1:
        n = sum(r.records for r in reports)
        print(f"total: {len(reports)} traces, {n} records, {total_diff} differ")
    return EXIT_OK if total_diff == 0 else EXIT_DIFF


def cmd_dump(a) -> int:
    from .trace import dump
    try:
        dump(a.trace, sys.stdout)
    except TraceError as e:
        return _err(str(e))
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def cmd_conform(a) -> int:
    from .trace.conform import conform
    from .trace.scenarios import SCENARIOS
    unknown = [n for n in a.scenarios if n not in SCENARIOS]
    if unknown:
        return _err(f"unknown scenario {unknown[0]!r} (bpfemu scenarios lists them)")
    if a.profiles or a.trace:
        return _conform_profiles(a)
    try:
        differing = conform(a.scenarios, kernel=a.kernel, verbose=a.verbose, profile=a.profile)
    except TraceError as e:
        return _err(str(e))
    except RuntimeError as e:
        return _err(str(e))
    return EXIT_OK if differing == 0 else EXIT_DIFF


def _conform_profiles(a) -> int:
    """conform --profiles/--trace: traces on several kernel profiles, in a table."""
    from .trace.kernels import VERSIONS, check, corpus, render
    versions = a.profiles.split(",") if a.profiles else list(VERSIONS)
    if any(v not in VERSIONS for v in versions):
        return _err(f"--profiles {a.profiles}: known kernels are {', '.join(VERSIONS)}")
    traces = a.trace or [t for v in versions for t in corpus(v, a.scenarios)]
    try:
        results = check(traces, versions, max_diffs=3 if a.verbose < 2 else None)
    except TraceError as e:
        return _err(str(e))
    return EXIT_OK if render(results, versions, sys.stdout, verbose=a.verbose) == 0 else EXIT_DIFF


def cmd_scenarios(a) -> int:
    from .trace.scenarios import ORDER, SCENARIOS, pending_commands
    pending = pending_commands()
    for n in ORDER:
        sc = SCENARIOS[n]
        extra = f"  [emulator lacks {', '.join(pending[n])}]" if n in pending else ""
        print(f"{n:22s} {sc.doc}{extra}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bpfemu", description="The Linux bpf() map syscall ABI, "
                                "emulated: record, replay and check conformance.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("conform", help="run the conformance scenarios on the emulator against "
                       "the live kernel (or the golden corpus) and print a table")
    c.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    c.add_argument("--kernel", choices=("auto", "yes", "no"), default="auto",
                   help="use the live kernel (auto: where bpf() is permitted)")
    c.add_argument("-v", "--verbose", action="count", default=0,
                   help="show the differences (-vv: all of them)")
    c.add_argument("--profile", default=None, metavar="KERNEL",
                   help="the kernel checked: 6.1, 6.12 or 6.18 (default); its golden corpus "
                        "where the live kernel is another")
    c.add_argument("--profiles", default=None, metavar="K1,K2,...",
                   help="replay traces (--trace, or the corpora of these kernels) on each of "
                        "these kernels' profiles and print where they differ")
    c.add_argument("--trace", action="append", default=[], metavar="TRACE",
                   help="with --profiles: a trace to check (repeatable)")
    c.set_defaults(func=cmd_conform)

    r = sub.add_parser("record", help="run a scenario and record its bpf() calls")
    r.add_argument("scenario", metavar="SCENARIO",
                   help="a built-in name, module:function or file.py:function")
    r.add_argument("-o", "--output", required=True, metavar="TRACE",
                   help="the trace to write (.jsonl, or .jsonl.gz compressed)")
    r.add_argument("--backend", choices=("kernel", "emulator"), default="kernel")
    r.add_argument("--cpus", type=int, default=None,
                   help="possible CPUs (emulator; default: this machine's)")
    r.add_argument("--profile", default=None, metavar="KERNEL",
                   help="the emulator's kernel profile (6.1, 6.12, 6.18; default 6.18)")
    r.add_argument("--bpffs", default=None, metavar="DIR",
                   help="where pin scenarios pin (kernel: a bpffs is mounted there)")
    r.set_defaults(func=cmd_record)

    rp = sub.add_parser("replay", help="replay traces and report every difference")
    rp.add_argument("traces", nargs="+", metavar="TRACE")
    rp.add_argument("--backend", choices=("emulator", "kernel"), default="emulator")
    rp.add_argument("--max-diffs", type=int, default=20, metavar="N",
                    help="differences to show per trace (default 20)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    rp.add_argument("--profile", "--kernel-profile", default=None, metavar="KERNEL",
                    help="the emulator's kernel profile (6.1, 6.12, 6.18; default: that of the "
                         "kernel the trace was recorded on)")
    rp.set_defaults(func=cmd_replay)

    d = sub.add_parser("dump", help="print a trace strace-style")
    d.add_argument("trace", metavar="TRACE")
    d.set_defaults(func=cmd_dump)

    s = sub.add_parser("scenarios", help="list the built-in scenarios")
    s.set_defaults(func=cmd_scenarios)
    return p


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    if a.command is None:
        p.print_help()
        return EXIT_BAD
    try:
        return a.func(a)
    except KeyboardInterrupt:
        sys.stderr.write("bpfemu: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
