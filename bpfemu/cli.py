"""The ``bpfemu`` command: record, replay, dump and conform.

    bpfemu conform                      the emulator against the kernel (or the golden corpus)
    bpfemu record SCENARIO -o TRACE     run a scenario on the live kernel (or the emulator)
    bpfemu replay TRACE...              replay traces onto the emulator (or the kernel); diff
    bpfemu dump TRACE                   the strace-style listing of a trace
    bpfemu scenarios                    the built-in scenarios

Exit status:
    0    success: everything asked for was checked and nothing differs
    1    differences (replay, conform), or a recorded scenario failed
    2    bad input or usage (one line naming the file and record on stderr)
    3    incomplete: nothing differs, but not everything asked for was checked (conform: a
         scenario skipped, or no call checked at all; replay: a truncated trace)
    130  interrupted (Ctrl-C)
    141  the output pipe was closed (``bpfemu conform | head``), as for a process killed by
         SIGPIPE
"""
import argparse
import os
import sys

from .trace.format import TraceError

EXIT_OK, EXIT_DIFF, EXIT_BAD, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141

# Possible CPUs an emulator may be given: the largest NR_CPUS x86_64 Linux builds with
# (CONFIG_MAXSMP). Per-CPU maps hold a slot per possible CPU, so more would only be slow.
MAX_CPUS = 8192


def _int_in(lo: int, hi: int | None, what: str):
    """An argparse type: an int in [lo, hi] (a usage error, exit 2, otherwise)."""
    def parse(text: str) -> int:
        try:
            n = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if n < lo or (hi is not None and n > hi):
            bound = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"{what} must be {bound}, got {n}")
        return n
    return parse


def _err(msg: str) -> int:
    sys.stderr.write(f"bpfemu: {msg}\n")
    return EXIT_BAD


LIVE_CHOICES = ("auto", "yes", "no")


def _kernel_profile(a) -> str | None:
    """The profile named by --kernel K (or its alias --profile): "6.1", "6.12", "6.18" or a
    release such as "6.12.118+deb12-amd64"; None for the default. ValueError if unknown."""
    name = getattr(a, "profile", None)
    if name is None and getattr(a, "kernel", None) not in (None, *LIVE_CHOICES):
        name = a.kernel
    if name is not None:
        from .profile import get_profile
        get_profile(name)                       # ValueError: no such profile
    return name


def cmd_record(a) -> int:
    from .trace.run import ScenarioError, load_scenario, record_scenario
    from .trace.scenarios import Interference
    try:
        name, fn = load_scenario(a.scenario)
        profile = _kernel_profile(a)
    except (ScenarioError, ValueError) as e:
        return _err(str(e))
    if a.backend == "kernel":
        from .host import HostKernel
        why = HostKernel.available()
        if why:
            return _err(f"the live kernel's bpf() is not usable here ({why}); "
                        "use --backend emulator")
    try:
        record_scenario(a.scenario, a.output, backend=a.backend, cpus=a.cpus, bpffs_root=a.bpffs,
                        profile=profile)
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
    try:
        profile = _kernel_profile(a)
    except ValueError as e:
        return _err(str(e))
    if a.backend == "kernel":
        from .host import HostKernel
        why = HostKernel.available()
        if why:
            return _err(f"the live kernel's bpf() is not usable here ({why})")
    total_diff = 0
    incomplete = False
    reports = []
    for path in a.traces:
        prog = print_progress_factory(sys.stderr, os.path.basename(path)) if not a.quiet else None
        try:
            rep = replay(path, a.backend, max_diffs=a.max_diffs, progress=prog,
                         profile=profile)
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
        if rep.truncated:
            incomplete = True
        for note in rep.relaxed_notes():
            print(note)
        rate = rep.records / rep.seconds if rep.seconds else 0
        print(f"{rep.summary()} [{rep.seconds:.2f}s, {rate:,.0f} records/s]")
    if len(reports) > 1:
        n = sum(r.records for r in reports)
        print(f"total: {len(reports)} traces, {n} records, {total_diff} differ")
    if total_diff:
        return EXIT_DIFF
    if incomplete:
        sys.stderr.write("bpfemu: incomplete: a trace ends early (see the warnings), so the "
                         "calls after its end were not checked\n")
        return EXIT_INCOMPLETE
    return EXIT_OK


def cmd_dump(a) -> int:
    from .trace import dump
    try:
        # Warnings go to stderr too, where a listing piped into a pager or head still shows them.
        dump(a.trace, sys.stdout, warn=lambda w: print(f"bpfemu: warning: {w}", file=sys.stderr))
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
        profile = _kernel_profile(a)
    except ValueError as e:
        return _err(str(e))
    # --kernel auto|yes|no is the older spelling of --live.
    live = a.kernel if a.kernel in LIVE_CHOICES else a.live
    try:
        result = conform(a.scenarios, kernel=live, verbose=a.verbose, profile=profile)
    except TraceError as e:
        return _err(str(e))
    except RuntimeError as e:
        return _err(str(e))
    if result.differing:
        return EXIT_DIFF
    if result.skipped or result.checked == 0:
        what = (f"{len(result.skipped)} scenario(s) not checked ({', '.join(result.skipped)})"
                if result.skipped else "no call was checked")
        sys.stderr.write(f"bpfemu: incomplete: {what}\n")
        return EXIT_INCOMPLETE
    return EXIT_OK


def _conform_profiles(a) -> int:
    """conform --profiles/--trace: traces on several kernel profiles, in a table."""
    from .trace.kernels import VERSIONS, check, corpus, render
    versions = a.profiles.split(",") if a.profiles else list(VERSIONS)
    if any(v not in VERSIONS for v in versions):
        return _err(f"--kernels {a.profiles}: known kernels are {', '.join(VERSIONS)}")
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
    from . import __version__
    p.add_argument("--version", action="version", version=f"bpfemu {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("conform", help="run the conformance scenarios on the emulator against "
                       "the live kernel (or the golden corpus) and print a table")
    c.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    c.add_argument("--kernel", default=None, metavar="KERNEL",
                   help="the kernel checked: 6.1, 6.12 or 6.18 (default); its golden corpus "
                        "where the live kernel is another (auto, yes, no: as --live)")
    c.add_argument("--profile", default=None, metavar="KERNEL", help="the same as --kernel")
    c.add_argument("--live", choices=LIVE_CHOICES, default="auto",
                   help="use the live kernel (auto: where bpf() is permitted and it is KERNEL)")
    c.add_argument("-v", "--verbose", action="count", default=0,
                   help="show the differences (-vv: all of them)")
    c.add_argument("--kernels", "--profiles", dest="profiles", default=None, metavar="K1,K2,...",
                   help="replay traces (--trace, or the corpora of these kernels) on each of "
                        "these kernels' profiles and print where they differ")
    c.add_argument("--trace", action="append", default=[], metavar="TRACE",
                   help="with --kernels: a trace to check (repeatable)")
    c.set_defaults(func=cmd_conform)

    r = sub.add_parser("record", help="run a scenario and record its bpf() calls "
                       "(record -o TRACE -- CMD: a program's calls, made on the live kernel)")
    r.add_argument("scenario", metavar="SCENARIO",
                   help="a built-in name, module:function or file.py:function")
    r.add_argument("-o", "--output", required=True, metavar="TRACE",
                   help="the trace to write (.jsonl, or .jsonl.gz compressed)")
    r.add_argument("--backend", choices=("kernel", "emulator"), default="kernel")
    r.add_argument("--cpus", type=_int_in(1, MAX_CPUS, "--cpus"), default=None, metavar="N",
                   help=f"possible CPUs, 1..{MAX_CPUS} (emulator; default: this machine's)")
    r.add_argument("--kernel", "--profile", dest="profile", default=None, metavar="KERNEL",
                   help="the emulator's kernel profile (6.1, 6.12, 6.18; default 6.18)")
    r.add_argument("--bpffs", default=None, metavar="DIR",
                   help="where pin scenarios pin (kernel: a bpffs is mounted there)")
    r.set_defaults(func=cmd_record)

    rp = sub.add_parser("replay", help="replay traces and report every difference")
    rp.add_argument("traces", nargs="+", metavar="TRACE")
    rp.add_argument("--backend", choices=("emulator", "kernel"), default="emulator")
    rp.add_argument("--max-diffs", type=_int_in(0, None, "--max-diffs"), default=20,
                    metavar="N", help="differences to show per trace (default 20; 0: only "
                    "count them)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    rp.add_argument("--kernel", "--profile", "--kernel-profile", dest="profile", default=None,
                    metavar="KERNEL",
                    help="the emulator's kernel profile (6.1, 6.12, 6.18; default: that of the "
                         "kernel the trace was recorded on)")
    rp.set_defaults(func=cmd_replay)

    d = sub.add_parser("dump", help="print a trace strace-style")
    d.add_argument("trace", metavar="TRACE")
    d.set_defaults(func=cmd_dump)

    s = sub.add_parser("scenarios", help="list the built-in scenarios")
    s.set_defaults(func=cmd_scenarios)

    from .intercept.cli import add_parsers
    add_parsers(sub)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["record"] and "--" in argv:        # record -o TRACE -- CMD: a program
        from .intercept.cli import record_command
        return record_command(argv[1:])
    p = build_parser()
    a = p.parse_args(argv)
    if a.command is None:
        p.print_help()
        return EXIT_BAD
    try:
        status = a.func(a)
        sys.stdout.flush()              # inside the try: a reader gone by now is EXIT_PIPE too
        return status
    except KeyboardInterrupt:
        sys.stderr.write("bpfemu: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`bpfemu conform | head -1`): no traceback, and no more
        # output; stdout is pointed at /dev/null so that the interpreter's final flush
        # does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


if __name__ == "__main__":
    sys.exit(main())
