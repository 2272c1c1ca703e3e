"""The guest's initramfs: busybox, the modules, an init that mounts the host and runs one command.

The host's root file system is shared read-only over virtio-9p and mounted under a tmpfs
overlay, so the guest sees the host's files (the repository, the venv, its interpreter) and
may write anywhere without touching the host. The command's output goes to the second serial
port, which the runner copies to its own stdout; its exit status comes back as a marker line
on the first (the console, kept in a log file with the kernel's messages).
"""
import io
import os
import shlex
import shutil
import stat

EXIT_MARKER = "BPFEMU-VM-EXIT="
READY_MARKER = "BPFEMU-VM-READY"
NINEP_TAG = "hostroot"

# Variables of the host's environment that describe the host's terminal or session, not the
# command's world; everything else is passed into the guest.
_ENV_DROPPED = {"PWD", "OLDPWD", "SHLVL", "_", "DISPLAY", "TMUX", "TMUX_PANE", "SSH_AUTH_SOCK",
                "SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"}

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "bpfemu-vm: $*"; echo "{exit}125"; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.order); do insmod /modules/$m.ko || fail "insmod $m failed"; done
mkdir -p /lower /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose {tag} /lower \
    || fail "mounting the host's root over 9p failed"
mount -t tmpfs -o mode=0755 rw /rw && mkdir /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot \
    || fail "the overlay over the host's root failed"
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/shm $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t bpf bpf $R/sys/fs/bpf || fail "mounting a bpffs failed"
while read tag dir; do
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 $tag "$R$dir" \
        || fail "mounting the writable $dir over 9p failed"
done < /shares
mkdir -p $R/.bpfemu-vm && cp /cmd.sh $R/.bpfemu-vm/cmd.sh
stty -F /dev/ttyS1 raw -echo
echo {ready}
chroot $R /bin/sh /.bpfemu-vm/cmd.sh </dev/null >/dev/ttyS1 2>&1
echo "{exit}$?"
poweroff -f
""".replace("{exit}", EXIT_MARKER).replace("{tag}", NINEP_TAG).replace("{ready}", READY_MARKER)


def command_script(argv, cwd: str, env: dict) -> str:
    """The guest-side script: the caller's environment and directory, then the command."""
    lines = ["#!/bin/sh"]
    for k, v in sorted(env.items()):
        if k in _ENV_DROPPED or not k.isidentifier():
            continue
        lines.append(f"export {k}={shlex.quote(v)}")
    lines.append(f"cd {shlex.quote(cwd)} || exit 126")
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


class _Cpio:
    """A newc cpio archive (the format the kernel unpacks as its initramfs)."""

    def __init__(self):
        self.out = io.BytesIO()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0)) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(name) + 1, 0]
        self.ino += 1
        self.out.write(b"070701" + b"".join(b"%08X" % f for f in fields))
        self.out.write(name.encode() + b"\0")
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self):
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return self.out.getvalue()


def busybox_path() -> str | None:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p) and _is_static(p):
            return p
    p = shutil.which("busybox")
    return p if p and _is_static(p) else None


def _is_static(path: str) -> bool:
    """A dynamically linked busybox would need the host's libc inside the initramfs."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    return b"/lib64/ld-linux" not in head and b"ld-linux-x86-64" not in head


def share_tag(i: int) -> str:
    return f"rw{i}"


def build(image, argv, cwd: str, env: dict, busybox: str, writable=()) -> bytes:
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "modules"):
        cpio.add(d, stat.S_IFDIR | 0o755)
    # The kernel opens /dev/console for init before anything is mounted.
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    with open(busybox, "rb") as f:
        cpio.add("bin/busybox", stat.S_IFREG | 0o755, f.read())
    cpio.add("init", stat.S_IFREG | 0o755, INIT.encode())
    # Host directories the guest writes through to (9p read-write over the overlay).
    shares = "".join(f"{share_tag(i)} {d}\n" for i, d in enumerate(writable))
    cpio.add("shares", stat.S_IFREG | 0o644, shares.encode())
    cpio.add("cmd.sh", stat.S_IFREG | 0o755, command_script(argv, cwd, env).encode())
    names = []
    for path in image.modules:
        names.append(path.stem)
        cpio.add(f"modules/{path.name}", stat.S_IFREG | 0o644, path.read_bytes())
    cpio.add("modules.order", stat.S_IFREG | 0o644, "".join(n + "\n" for n in names).encode())
    return cpio.finish()
