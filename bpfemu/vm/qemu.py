"""Boot a kernel image under qemu, run one command in it, return its exit status and output."""
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from . import initramfs
from .images import ImageError, KernelImage

QEMU = "qemu-system-x86_64"
# The CPU TCG emulates. Not "max": with it Linux 6.12 faults in do_sync_core() (an IRET that
# TCG's max model gets wrong) and hangs bringing up a second CPU. Overridable for experiments.
CPU_MODEL = os.environ.get("BPFEMU_VM_CPU", "qemu64")


@dataclass
class VmResult:
    returncode: int            # the command's exit status (125: the guest failed before it ran)
    output: bytes | None       # stdout and stderr together, when captured
    boot_seconds: float        # from starting qemu to the guest's init about to run the command
    total_seconds: float
    console: str               # the guest's console: kernel messages and init's own


def kvm_usable() -> str | None:
    """None if /dev/kvm can be opened, else why not (whether it can run a kernel is another matter)."""
    if not os.path.exists("/dev/kvm"):
        return "/dev/kvm does not exist (no KVM on this host)"
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        return f"/dev/kvm cannot be opened: {e.strerror}"
    return None


def qemu_command(image: KernelImage, initrd: str, console_log: str, cpus: int, memory_mb: int,
                 accel: str, writable=()) -> list:
    # A vmlinux is entered through its PVH note (no decompression under TCG), a bzImage as usual.
    cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init"
    return [QEMU, "-M", "pc", "-accel", accel, "-cpu", CPU_MODEL if accel == "tcg" else "host",
            "-smp", str(cpus), "-m", str(memory_mb),
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(image.kernel), "-initrd", initrd, "-append", cmdline,
            "-chardev", f"file,id=console,path={console_log}", "-serial", "chardev:console",
            "-chardev", "stdio,id=out,signal=off", "-serial", "chardev:out",
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", f"virtio-9p-pci,fsdev=hostroot,mount_tag={initramfs.NINEP_TAG}",
            *_share_args(writable)]


def _share_args(writable) -> list:
    args = []
    for i, d in enumerate(writable):
        tag = initramfs.share_tag(i)
        args += ["-fsdev", f"local,id={tag},path={d},security_model=none,multidevs=remap",
                 "-device", f"virtio-9p-pci,fsdev={tag},mount_tag={tag}"]
    return args


def run(image: KernelImage, argv, *, cpus: int = 1, memory_mb: int = 2048, accel: str = "tcg",
        cwd: str | None = None, env: dict | None = None, capture: bool = False,
        timeout: float | None = None, writable=()) -> VmResult:
    """Run argv inside the guest; its output goes to our stdout, or is returned with capture.

    The host's file system is read-only in the guest (writes land in a tmpfs and vanish),
    except the directories in ``writable``, whose writes reach the host."""
    writable = [os.path.abspath(d) for d in writable]
    for d in writable:
        if not os.path.isdir(d):
            raise ImageError(f"--writable {d}: not a directory")
    if shutil.which(QEMU) is None:
        raise ImageError(f"{QEMU} is not installed (Debian: apt-get install qemu-system-x86)")
    if accel == "kvm":
        why = kvm_usable()
        if why:
            raise ImageError(f"KVM asked for but not usable: {why}; use --accel tcg")
    busybox = initramfs.busybox_path()
    if busybox is None:
        raise ImageError("no statically linked busybox (Debian: apt-get install busybox-static)")
    cwd = cwd or os.getcwd()
    env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="bpfemu-vm-") as tmp:
        initrd = os.path.join(tmp, "initramfs.cpio")
        with open(initrd, "wb") as f:
            f.write(initramfs.build(image, argv, cwd, env, busybox, writable))
        console_log = os.path.join(tmp, "console.log")
        cmd = qemu_command(image, initrd, console_log, cpus, memory_mb, accel, writable)
        start = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if capture else None)
        boot = [None]
        try:
            output = _wait(proc, console_log, start, boot, timeout, capture)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        total = time.monotonic() - start
        console = _read(console_log)
    status = _exit_status(console)
    if status is None:
        tail = "\n".join(console.splitlines()[-25:])
        why = "timed out" if proc.returncode == -9 else f"qemu exited with {proc.returncode}"
        hint = " (KVM here may be unable to run this kernel: try --accel tcg)" if accel == "kvm" else ""
        raise VmError(f"the guest did not report the command's exit status ({why}){hint}; "
                      f"its console ended with:\n{tail}")
    return VmResult(status, output, boot[0] if boot[0] is not None else total, total, console)


class VmError(ImageError):
    """The guest did not run the command to its end."""


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _wait(proc, console_log, start, boot, timeout, capture):
    """Wait for qemu, noting when the guest's init reports ready (the boot time)."""
    import threading
    chunks = []
    reader = None
    if capture:
        reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
        reader.start()
    deadline = None if timeout is None else start + timeout
    while proc.poll() is None:
        if boot[0] is None and initramfs.READY_MARKER in _read(console_log):
            boot[0] = time.monotonic() - start
        if deadline is not None and time.monotonic() > deadline:
            proc.kill()
            break
        time.sleep(0.05 if boot[0] is None else 0.5)
    proc.wait()
    if reader:
        reader.join()
        return b"".join(chunks)
    return None


def _exit_status(console: str) -> int | None:
    for line in reversed(console.splitlines()):
        line = line.strip()
        if line.startswith(initramfs.EXIT_MARKER):
            try:
                return int(line[len(initramfs.EXIT_MARKER):])
            except ValueError:
                return None
    return None
