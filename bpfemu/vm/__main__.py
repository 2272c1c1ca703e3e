"""run-on-kernel KERNEL_VERSION [options] -- CMD ARGS...: CMD's exit status and output from a VM."""
import argparse
import os
import signal
import sys

from .images import ImageError, fetch
from .qemu import run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="run-on-kernel",
        description="Boot a Debian kernel under qemu with the host's file system visible "
                    "(read-only, under a tmpfs overlay) and a bpffs at /sys/fs/bpf, run one "
                    "command as root in it, and exit with its status.")
    p.add_argument("kernel", help="6.1, 6.12, or a Debian package name linux-image-...-unsigned")
    p.add_argument("--cpus", type=int, default=1, help="CPUs of the guest (-smp; default 1)")
    p.add_argument("--memory", type=int, default=2048, help="guest memory in MiB (default 2048)")
    p.add_argument("--accel", choices=("tcg", "kvm"), default=os.environ.get("BPFEMU_VM_ACCEL", "tcg"),
                   help="tcg (default: works everywhere) or kvm (only where it runs a stock kernel)")
    p.add_argument("--writable", action="append", default=[], metavar="DIR",
                   help="a host directory the guest may write to (repeatable); the rest of the "
                        "host's files are read-only, writes to them vanish with the VM")
    p.add_argument("--timeout", type=float, default=None, help="kill the VM after this many seconds")
    p.add_argument("--fetch-only", action="store_true", help="fetch and cache the image, run nothing")
    p.add_argument("--timing", action="store_true", help="print boot and total time on stderr")
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[argv.index("--") + 1:] if "--" in argv else []
    a = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if not cmd and not a.fetch_only:
        p.error("no command (run-on-kernel 6.1 -- CMD ARGS...)")
    # A TERM or HUP unwinds like Ctrl-C, so the VM is killed on the way out, never left running.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: sys.exit(128 + signum))
    try:
        image = fetch(a.kernel, log=lambda m: print(f"run-on-kernel: {m}", file=sys.stderr))
        if a.fetch_only:
            print(f"{image.package}: {image.release} in {image.directory}")
            return 0
        sys.stdout.flush()
        res = run(image, cmd, cpus=a.cpus, memory_mb=a.memory, accel=a.accel, timeout=a.timeout,
                  writable=a.writable)
    except ImageError as e:
        print(f"run-on-kernel: {e}", file=sys.stderr)
        return 125
    if a.timing:
        print(f"run-on-kernel: {image.release}: boot to command {res.boot_seconds:.1f} s, "
              f"total {res.total_seconds:.1f} s, exit status {res.returncode}", file=sys.stderr)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
