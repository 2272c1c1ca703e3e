"""Start a command under the filter and serve it: what `bpfemu run` does.

    code = run(["bpftool", "map", "show"], Emulator())

The command is started through the exec helper (child.py), which installs the filter on
itself and hands the listener back over a socket before it execs the command, so this works
from a process with threads, and needs no privilege.
"""
import os
import signal
import socket
import subprocess
import sys
import threading

from .supervisor import Supervisor

_HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")


class StartError(OSError):
    """The command could not be started under the filter."""


def _interpreter() -> str:
    """This Python, by a path the current user can execute: a venv's interpreter may be a
    link into a directory the user cannot search (/root/.pyenv as nobody), while the
    running binary itself is always reachable through /proc/self/exe."""
    exe = sys.executable
    return exe if exe and os.access(exe, os.X_OK) else "/proc/self/exe"


def spawn(cmd: list, *, statfs: bool = True, **popen_kw):
    """Start cmd under a new filter: (Popen, listener fd). Raises StartError."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        try:
            proc = subprocess.Popen(
                [_interpreter(), "-s", "-S", _HELPER, str(theirs.fileno()),
                 "1" if statfs else "0", *cmd],
                pass_fds=[theirs.fileno()], **popen_kw)
        finally:
            theirs.close()
        try:
            msg, fds, _, _ = socket.recv_fds(ours, 1, 1)
        except OSError:
            msg, fds = b"", []
    if msg != b"L" or not fds:
        for fd in fds:
            os.close(fd)
        code = proc.wait()
        raise StartError(f"could not install the seccomp filter (exit status {code})")
    return proc, fds[0]


def exit_status(returncode: int) -> int:
    """A shell's exit status: the code, or 128 + the signal that killed the command."""
    return 128 - returncode if returncode < 0 else returncode


# DEVIATION(supervisor-gone): if the supervisor dies, every later bpf() of the tree fails
# with ENOSYS (the kernel's answer for a filtered call whose listener is closed).
def run(cmd: list, emu, *, statfs: bool = True, trace=None, **popen_kw) -> int:
    """Run cmd with every bpf() of its tree served by emu, in this thread. Returns when no
    process of the tree is left; the result is cmd's exit status (128 + signal)."""
    proc, listener = spawn(cmd, statfs=statfs, **popen_kw)
    sup = Supervisor(emu, listener, trace=trace)
    try:
        sup.serve()
    finally:
        os.close(listener)
    return exit_status(proc.wait())


class Background:
    """cmd under the filter, served from a supervisor thread of this process (fixtures):
    the test keeps using emu while the command runs. ``wait()`` gives the exit status."""

    def __init__(self, cmd: list, emu, *, statfs: bool = True, trace=None, **popen_kw):
        self.emu = emu
        self.proc, self.listener = spawn(cmd, statfs=statfs, **popen_kw)
        self._stop_r, self._stop_w = os.pipe()
        self.supervisor = Supervisor(emu, self.listener, trace=trace, stop_fd=self._stop_r)
        self.error = None
        self.thread = threading.Thread(target=self._serve, name="bpfemu-supervisor", daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            self.supervisor.serve()
        except BaseException as e:       # reported by wait()
            self.error = e
        finally:
            # No one serves the tree any more: its calls must fail (ENOSYS), not wait for
            # ever on a listener this process still holds.
            os.close(self.listener)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the command and every process of its tree; its exit status."""
        code = self.proc.wait(timeout)
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise subprocess.TimeoutExpired(self.proc.args, timeout)
        self._cleanup()
        if self.error is not None:
            raise self.error
        return exit_status(code)

    def kill(self) -> None:
        """Kill the command and stop serving (what it left in emu stays)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.write(self._stop_w, b"x")
        self.thread.join()
        self._cleanup()

    def _cleanup(self):
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self.listener = self._stop_r = self._stop_w = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.listener >= 0:
            self.kill()


def ignore_terminal_signals(proc=None):
    """Like a shell waiting for its job: ^C and ^\\ go to the command, not to us. SIGTERM and
    SIGHUP sent to us (timeout(1), a closed terminal) are passed on to the command, and we
    serve its tree until it ends, rather than die and leave it without bpf()."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    if proc is not None:
        def forward(sig, _frame):
            if proc.poll() is None:
                proc.send_signal(sig)
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGHUP, forward)
