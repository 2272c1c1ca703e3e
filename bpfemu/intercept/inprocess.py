"""In-process interception: every bpf() of this process served by an Emulator.

    with intercepted(emu):
        libbpf = ctypes.CDLL("libbpf.so.1")
        fd = libbpf.bpf_map_create(1, b"m", 4, 8, 16, None)   # an emulated map

The first use installs a seccomp filter on every thread of the process
(SECCOMP_FILTER_FLAG_TSYNC with TSYNC_ESRCH, which the kernel requires with NEW_LISTENER) and
starts a supervisor thread that receives the notifications. A filter can never be removed,
and a process can have only one listener, so both stay for the life of the process and
every later use reuses them: the context only says which Emulator answers. Outside any
context (before, between and after), bpf(), statfs() and fstatfs() are passed on to the kernel with
SECCOMP_USER_NOTIF_FLAG_CONTINUE: the process behaves as if not intercepted, each call paying
a round trip through the supervisor thread. Child processes started after the first use
inherit the filter but not the supervisor's attention: their calls are served too, as the
threads of this process, while a context is active.

Rules:
- The supervisor thread never calls bpf() (its own call would wait for its own reply).
- A caller must release the GIL while it is in bpf() (ctypes.CDLL and cffi do; PyDLL and
  ctypes.pythonapi do not), or the supervisor thread cannot run and the call never returns.
- If the process already has a listener (it runs under `bpfemu run`, or another supervisor),
  installing ours fails (EBUSY) and intercepted() raises InterceptionError: its calls are
  already served by that supervisor.
"""
import contextlib
import errno
import os
import select
import threading

from . import seccomp
from .supervisor import Supervisor


class InterceptionError(RuntimeError):
    """This process cannot be intercepted (the filter could not be installed)."""


class _ProcessInterception:
    """The one filter and supervisor thread of this process."""

    def __init__(self):
        self.lock = threading.Lock()         # held while a notification is handled or the
        self.supervisor = None               # emulator is swapped
        self.listener = -1
        self.pid = None
        self.thread = None
        self.continued = 0                   # calls passed on to the kernel

    def ensure(self) -> None:
        if self.pid == os.getpid():
            return
        if self.pid is not None:
            raise InterceptionError("a forked child of an intercepted process inherits the "
                                    "filter but not the supervisor thread")
        flags = (seccomp.SECCOMP_FILTER_FLAG_TSYNC | seccomp.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
                 | seccomp.SECCOMP_FILTER_FLAG_NEW_LISTENER
                 | seccomp.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
        try:
            self.listener = seccomp.install_filter(flags)
        except OSError as e:
            why = {errno.EBUSY: "this process already has a seccomp listener (is it running "
                                "under bpfemu run?)",
                   errno.ESRCH: "a thread of this process could not be synchronised"}
            raise InterceptionError(why.get(e.errno, e.strerror)) from None
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._loop, name="bpfemu-intercept", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        listener = self.listener
        while True:
            poller.poll()
            try:
                notif = seccomp.recv(listener)
            except OSError:
                continue                      # the caller went away before RECV
            with self.lock:
                sup = self.supervisor
                if sup is not None:
                    sup.reap()             # closes since the last call (no poll on them here)
                    sup.handle(notif)
                    continue
            self.continued += 1
            try:
                seccomp.send(listener, notif[0], 0, 0, seccomp.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
            except OSError:
                pass

    def serve(self, emu) -> None:
        self.ensure()
        with self.lock:
            if self.supervisor is not None:
                raise InterceptionError("interception is already active in this process")
            self.supervisor = Supervisor(emu, self.listener)

    def stop(self) -> None:
        with self.lock:
            sup, self.supervisor = self.supervisor, None
        if sup is not None:
            sup.close()


_PROCESS = _ProcessInterception()


@contextlib.contextmanager
def intercepted(emu):
    """Serve every bpf() of this process (any thread, any library) from emu while inside.
    Yields emu. Raises InterceptionError if this process cannot be intercepted."""
    _PROCESS.serve(emu)
    try:
        yield emu
    finally:
        _PROCESS.stop()


def is_installed() -> bool:
    """Whether this process carries the interception filter (for ever, once installed)."""
    return _PROCESS.pid == os.getpid()
