"""`bpfemu run` (and `bpfemu record -- CMD`): the command-line side of interception."""
import argparse
import sys


def add_parsers(sub) -> None:
    r = sub.add_parser(
        "run", help="run a command with every bpf() of its process tree served by an emulator",
        description="Run CMD with every bpf() call of it and of its descendants served by one "
        "emulated kernel, as any user. The exit status is CMD's (128 + signal if killed).")
    r.add_argument("--pin-root", default="/sys/fs/bpf", metavar="DIR",
                   help="the emulated bpffs mount point (default /sys/fs/bpf); statfs() there "
                   "reports a bpffs. When DIR is a directory you may write (not a real bpffs), "
                   "pins are files in it that ls, mv and rm act on; they are removed at the end")
    r.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="possible CPUs of the emulated kernel (default: this machine's)")
    r.add_argument("--kernel", "--profile", dest="profile", default=None, metavar="KERNEL",
                   help="the emulated kernel: 6.1, 6.12 or 6.18 (default: BPFEMU_PROFILE, else "
                   "6.18)")
    r.add_argument("--trace", default=None, metavar="OUT",
                   help="record every served bpf() call to this trace (.jsonl[.gz])")
    r.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")
    r.set_defaults(func=cmd_run)


def _command(a):
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        sys.stderr.write("bpfemu: no command given (bpfemu run [OPTIONS] -- CMD [ARGS...])\n")
    return cmd


def cmd_run(a) -> int:
    from ..emulator import Emulator
    from .run import StartError, ignore_terminal_signals, spawn
    from .supervisor import Supervisor
    import os
    cmd = _command(a)
    if not cmd:
        return 2
    if a.cpus is not None and a.cpus < 1:
        sys.stderr.write("bpfemu: --cpus must be at least 1\n")
        return 2
    try:
        emu = Emulator(nr_cpus=a.cpus, bpffs_root=a.pin_root, profile=a.profile)
    except ValueError as e:                     # no such kernel profile
        sys.stderr.write(f"bpfemu: --kernel: {e}\n")
        return 2
    from ..bpffs_dir import DirBpfFs, pin_dir_unusable
    if pin_dir_unusable(a.pin_root) is None:     # else pins live in the emulator's own tree
        emu.bpffs = DirBpfFs(a.pin_root, put=emu._unpinned)
    from ..profile import host_possible_cpus
    if a.cpus is not None and a.cpus != host_possible_cpus():
        sys.stderr.write(f"bpfemu: warning: {a.cpus} possible CPUs emulated, {host_possible_cpus()}"
                         " on this host: clients that size per-CPU values from "
                         "/sys/devices/system/cpu/possible (libbpf, bpftool, cilium/ebpf) will "
                         "use the wrong size\n")
    trace = None
    if a.trace:
        from .tracing import ServedCallTrace
        try:
            open(a.trace, "ab").close()          # say now if it cannot be written
        except OSError as e:
            sys.stderr.write(f"bpfemu: {a.trace}: {e.strerror}\n")
            return 2
        traces = []

        def trace(sup):
            traces.append(ServedCallTrace(sup, a.trace))
            return traces[0]
    try:
        proc, listener = spawn(cmd)
    except StartError as e:
        sys.stderr.write(f"bpfemu: {e}\n")
        return 126
    ignore_terminal_signals(proc)
    from .run import exit_status
    try:
        Supervisor(emu, listener, trace=trace).serve()
    finally:
        os.close(listener)
        if trace is not None and traces:
            traces[0].finish()
        if isinstance(emu.bpffs, DirBpfFs):
            emu.bpffs.clear()                    # the bpffs goes with the emulator
    return exit_status(proc.wait())


def record_command(argv: list) -> int:
    """bpfemu record -o TRACE -- CMD [ARGS...]"""
    i = argv.index("--")
    p = argparse.ArgumentParser(prog="bpfemu record", description="Run CMD with its bpf() "
                                "calls made on the live kernel by the supervisor and recorded, "
                                "with the bytes behind every pointer.")
    p.add_argument("-o", "--output", required=True, metavar="TRACE",
                   help="the trace to write (.jsonl, or .jsonl.gz compressed)")
    a = p.parse_args(argv[:i])
    cmd = argv[i + 1:]
    if not cmd:
        sys.stderr.write("bpfemu: no command given (bpfemu record -o TRACE -- CMD [ARGS...])\n")
        return 2
    from .record import record
    from .run import StartError, ignore_terminal_signals
    try:
        open(a.output, "ab").close()
    except OSError as e:
        sys.stderr.write(f"bpfemu: {a.output}: {e.strerror}\n")
        return 2
    try:
        return record(cmd, a.output, on_start=ignore_terminal_signals)
    except StartError as e:
        sys.stderr.write(f"bpfemu: {e}\n")
        return 126
