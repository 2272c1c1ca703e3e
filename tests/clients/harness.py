"""Running a real client on the live kernel and under `bpfemu run`, and comparing what it printed.

A client is a command line that takes one argument, a directory to pin maps in, and prints a
transcript. It is run

- on the live kernel as root, with a bpffs mounted on the pin directory in a private mount
  namespace (`unshare --mount`), so the mount is never seen by anyone else and goes away with
  the client;
- under `bpfemu run --pin-root DIR`, as `nobody` (setpriv, no capability, no group), where
  the emulator's own bpffs answers for the pin directory; and as root, to check that the
  emulator and not the kernel answered.

With CLIENT_PAUSE in its environment a client stops once, while its maps are open and
pinned, writes "PAUSE <link of a map fd>" on stderr and waits for a line on stdin; the
harness then looks at the kernel's map list from outside the supervised tree.

Transcripts are compared after `normalise`, which only renames what legitimately differs
between two runs of one client (see the docstring of each rule).
"""
import ctypes
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

from bpfemu import HostKernel
from bpfemu.uapi.consts import BPF_MAP_GET_FD_BY_ID, BPF_MAP_GET_NEXT_ID, BPF_OBJ_GET_INFO_BY_FD

TIMEOUT = 120
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
# Every client starts on CPU 0 and stays there unless it moves itself: an LRU map's free
# nodes sit in per-CPU lists, so an update on another CPU can evict where one on CPU 0 would
# not, and a thread the scheduler migrated would make a transcript depend on the moment.
ON_CPU0 = ["taskset", "-c", "0"]
# Mount a bpffs on $0 (the pin directory) and run the client, inside the new mount namespace.
_MOUNT_AND_RUN = 'mount -t bpf bpf "$0" && exec "$@"'


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    pause_link: str | None = None          # what the client's map fd linked to at PAUSE
    at_pause: object = None                 # what the pause hook returned
    pin_dir: str = ""
    trace: str | None = None                # the --trace file of an emulated run
    tree_fds: frozenset = frozenset()       # at PAUSE, what every fd of the tree linked to


def is_root() -> bool:
    return os.geteuid() == 0


def world_readable_tmpdir(prefix: str) -> str:
    """A fresh directory `nobody` can read and run files from (mkdtemp makes it 0700)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def fresh_pin_dir(base: str, prefix: str = "pins-") -> str:
    """A fresh directory under base that anyone may write (nobody pins or writes there)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    os.chmod(path, 0o777)
    return path


def _kill_group(p) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _run(argv, *, env=None, cwd=None, pause_hook=None, pin_dir="") -> Run:
    """Run argv; if pause_hook is given, the client runs with CLIENT_PAUSE and the hook is
    called (with no argument) while the client waits at its pause."""
    env = dict(os.environ if env is None else env)
    env.pop("CLIENT_PAUSE", None)
    if pause_hook is not None:
        env["CLIENT_PAUSE"] = "1"
    # Output is decoded leniently: the kernel lists other processes' maps too, whose names
    # may hold any byte (bpftool's plain `map show` prints them; the normaliser drops them).
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="backslashreplace") as out:
        # stdout to a file: the harness reads stderr up to the pause line while the client
        # writes, so a pipe for stdout could fill and block the client.
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.PIPE,
                             env=env, cwd=cwd, encoding="utf-8", errors="backslashreplace",
                             start_new_session=True)
        link, at_pause, err_lines, tree_fds = None, None, [], frozenset()
        # The pause loop reads stderr with no timeout of its own: a client that hangs
        # before its pause is killed by this timer (communicate() times out after it). The
        # whole process group: under `bpfemu run` the client is the supervisor's child.
        watchdog = threading.Timer(TIMEOUT, _kill_group, (p,))
        watchdog.start()
        try:
            if pause_hook is not None:
                for line in p.stderr:
                    if line.startswith("PAUSE"):
                        link = line[len("PAUSE"):].strip()
                        at_pause = pause_hook()
                        tree_fds = tree_fd_links(p.pid)
                        break
                    err_lines.append(line)
            _, err = p.communicate("\n", timeout=TIMEOUT)
        except BaseException:
            _kill_group(p)
            p.wait()
            raise
        finally:
            watchdog.cancel()
        out.seek(0)
        return Run(p.returncode, out.read(), "".join(err_lines) + err, link, at_pause, pin_dir,
                   tree_fds=tree_fds)


def run_on_kernel(argv, base: str, *, pause_hook=None) -> Run:
    """argv on the live kernel as root, a bpffs mounted on a fresh pin directory."""
    pin = fresh_pin_dir(base)
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_AND_RUN,
           pin, *ON_CPU0, *argv, pin]
    return _run(cmd, cwd=base, pause_hook=pause_hook, pin_dir=pin)


def run_recorded(argv, base: str, trace: str) -> Run:
    """argv as root under `bpfemu record -o trace`: its calls made on the live kernel by the
    supervisor. Pins go to /sys/fs/bpf, a bpffs mounted there in a private mount namespace:
    the path a replay's emulator takes for its bpffs."""
    pin = "/sys/fs/bpf"
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_AND_RUN,
           pin, *ON_CPU0, sys.executable, "-m", "bpfemu", "record", "-o", trace, "--",
           *argv, pin]
    return _run(cmd, cwd=base, pin_dir=pin)


def run_as_nobody_on_kernel(argv, base: str) -> Run:
    """argv as nobody on the live kernel, no bpfemu: every bpf() should get EPERM."""
    return run_directly(argv, base, as_nobody=True)


def bpfemu_run_argv(pin: str, options=()) -> list[str]:
    return [sys.executable, "-m", "bpfemu", "run", "--pin-root", pin, *options, "--"]


def run_emulated(argv, base: str, *, as_nobody: bool, pause_hook=None, options=()) -> Run:
    """argv under `bpfemu run [options]`; the supervisor and the client both as nobody if
    as_nobody."""
    pin = fresh_pin_dir(base)
    cmd = [*bpfemu_run_argv(pin, options), *ON_CPU0, *argv, pin]
    if as_nobody:
        cmd = [*AS_NOBODY, *cmd]
    # cwd=base: `python -m` puts the cwd first on sys.path, and base holds no package.
    return _run(cmd, cwd=base, pause_hook=pause_hook, pin_dir=pin)


def run_directly(argv, base: str, *, as_nobody: bool, pause_hook=None) -> Run:
    """argv with a fresh pin directory appended, as nobody or as the current user, with no
    `bpfemu run` around it (for a client that serves itself, in-process)."""
    pin = fresh_pin_dir(base)
    # taskset before setpriv: setpriv, still root, finds a python linked into /root.
    cmd = [*ON_CPU0, *AS_NOBODY, *argv, pin] if as_nobody else [*ON_CPU0, *argv, pin]
    return _run(cmd, cwd=base, pause_hook=pause_hook, pin_dir=pin)


def bpfemu_run_unavailable() -> str | None:
    """None when this checkout has `bpfemu run`, else why not."""
    p = subprocess.run([sys.executable, "-m", "bpfemu", "run", "--help"], capture_output=True,
                       text=True, cwd=tempfile.gettempdir(), timeout=TIMEOUT)
    if p.returncode != 0:
        return "`bpfemu run` is not available in this checkout: " + \
            (p.stderr.strip().splitlines() or ["?"])[-1]
    return None


_kernel_why: list = []


def kernel_unavailable() -> str | None:
    """None when clients can run on the live kernel here (root, bpf(), a bpffs mounted in a
    private mount namespace), else why not. Probed once."""
    if not _kernel_why:
        _kernel_why.append(_probe_kernel())
    return _kernel_why[0]


def _probe_kernel() -> str | None:
    if os.geteuid() != 0:
        return "the live-kernel runs need root (bpf() and a bpffs mount)"
    why = HostKernel.available()
    if why:
        return f"live kernel bpf() not permitted: {why}"
    if not shutil.which("unshare"):
        return "unshare not found (Debian package util-linux)"
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            _MOUNT_AND_RUN, d, "true"], capture_output=True, text=True,
                           timeout=TIMEOUT)
    if p.returncode != 0:
        return f"cannot mount a bpffs in a private mount namespace: {p.stderr.strip()}"
    return None


def nobody_unavailable() -> str | None:
    """None when runs as nobody are possible (root, and setpriv to switch)."""
    if not is_root():
        return "switching to nobody needs root"
    if not shutil.which("setpriv"):
        return "setpriv not found (Debian package util-linux)"
    return None


def tree_fd_links(pid: int) -> frozenset:
    """What the fds of pid and of all its descendants (the supervisor's and the client's,
    under `bpfemu run`) link to: a kernel map fd links to anon_inode:bpf-map. Unlike map
    names, this cannot mistake another process's maps for the client's."""
    links, todo, seen = set(), [pid], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            for tid in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass                                 # closed meanwhile
        except OSError:
            pass                                         # exited meanwhile
    return frozenset(links)


KERNEL_MAP_LINK = "anon_inode:bpf-map"


def kernel_map_names() -> set[str]:
    """The names of every map the live kernel holds now (MAP_GET_NEXT_ID walk, as root)."""
    host, names, start = HostKernel(), set(), 0
    while True:
        attr = ctypes.create_string_buffer(168)
        struct.pack_into("<I", attr, 0, start)
        if host.bpf(BPF_MAP_GET_NEXT_ID, attr, 12) < 0:
            return names                                  # ENOENT: past the last id
        start = struct.unpack_from("<I", attr, 4)[0]
        attr = ctypes.create_string_buffer(168)
        struct.pack_into("<I", attr, 0, start)
        fd = host.bpf(BPF_MAP_GET_FD_BY_ID, attr, 12)
        if fd < 0:
            continue                                      # freed since the walk saw it
        try:
            info = ctypes.create_string_buffer(88)
            attr = ctypes.create_string_buffer(168)
            struct.pack_into("<IIQ", attr, 0, fd, 88, ctypes.addressof(info))
            if host.bpf(BPF_OBJ_GET_INFO_BY_FD, attr, 16) == 0:
                names.add(info.raw[24:40].split(b"\0")[0].decode(errors="replace"))
        finally:
            os.close(fd)


# --- normalisation ---------------------------------------------------------------------------

def rename_ids(text: str, patterns) -> str:
    """Map ids by order of first appearance: the kernel's ids are global and cyclic (other
    processes' maps take ids too), the emulator's start at 1 in each `bpfemu run`. What a
    client can check about ids (the same map through a pin or by id has the same id) stays
    visible, since equal ids get equal names."""
    seen: dict[str, str] = {}
    rx = re.compile("|".join(f"(?:{p})" for p in patterns), re.M)

    def any_group(m):
        for i, g in enumerate(m.groups(), 1):
            if g is not None:
                whole = m.group(0)
                seen.setdefault(g, f"ID{len(seen) + 1}")
                s, e = m.start(i) - m.start(0), m.end(i) - m.start(0)
                return whole[:s] + seen[g] + whole[e:]
        return m.group(0)

    return rx.sub(any_group, text)


def normalise(text: str, pin_dir: str) -> str:
    """The C, Go and ctypes clients: the pin directory (a fresh one per run) reads PIN, and
    ids printed as id#N are renamed by first appearance (rename_ids)."""
    text = text.replace(pin_dir, "PIN")
    return rename_ids(text, [r"id#(\d+)"])
