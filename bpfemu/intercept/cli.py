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
                   "reports a bpffs")
    r.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="possible CPUs of the emulated kernel (default: this machine's)")
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
    emu = Emulator(nr_cpus=a.cpus, bpffs_root=a.pin_root)
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
    ignore_terminal_signals()
    from .run import exit_status
    try:
        Supervisor(emu, listener, trace=trace).serve()
    finally:
        os.close(listener)
        if trace is not None and traces:
            traces[0].finish()
    return exit_status(proc.wait())
