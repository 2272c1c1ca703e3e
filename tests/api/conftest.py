"""Fixtures for the Python-facing API tests: libbpf-style functions and Map on both backends.

``backend`` (tests/conftest.py) gives the emulator and the live kernel; everything here wraps
it. Expected values are the kernel's (the same body runs on HostKernel) or libbpf's and bcc's
documented conventions.
"""
import ctypes
import os
import tempfile

import pytest

from bpfemu import Emulator, HostKernel
from bpfemu.libbpf import LibBpf
from bpfemu.maps_api import Map
from tests.support import NCPU, host_unavailable_reason


class Recorder:
    """A backend wrapper that records every bpf() call: (cmd, size, attr bytes as sent)."""

    def __init__(self, backend):
        self.b = backend
        self.calls = []

    def bpf(self, cmd, attr, size):
        self.calls.append((cmd, size, ctypes.string_at(ctypes.addressof(attr), 168)
                           if isinstance(attr, ctypes.Array) else bytes(attr)))
        return self.b.bpf(cmd, attr, size)

    def close(self, fd):
        return self.b.close(fd)

    def __getattr__(self, name):            # nr_cpus, cpu, bpffs ... of the wrapped backend
        return getattr(self.b, name)

    @property
    def cmds(self):
        return [cmd for cmd, _, _ in self.calls]

    def sizes(self):
        return [(cmd, size) for cmd, size, _ in self.calls]


class TrackingLib(LibBpf):
    """LibBpf over a Recorder, closing every fd it handed out when the test ends."""

    def __init__(self, backend):
        self.rec = Recorder(backend)
        super().__init__(self.rec)
        self.fds = []

    def track(self, fd):
        if fd >= 0:
            self.fds.append(fd)
        return fd

    def bpf_map_create(self, *a, **kw):
        return self.track(super().bpf_map_create(*a, **kw))

    def bpf_map_get_fd_by_id_opts(self, *a, **kw):
        return self.track(super().bpf_map_get_fd_by_id_opts(*a, **kw))

    def bpf_obj_get_opts(self, *a, **kw):
        return self.track(super().bpf_obj_get_opts(*a, **kw))

    def close_all(self):
        for fd in reversed(self.fds):
            self.backend.close(fd)
        self.fds.clear()


@pytest.fixture
def lib(backend):
    """libbpf-style functions on the emulator and on the live kernel, with a call recorder."""
    lb = TrackingLib(backend)
    yield lb
    lb.close_all()


def is_host(backend) -> bool:
    return isinstance(getattr(backend, "b", backend), HostKernel)


# --- a bpffs for pins: a private mount for the live kernel, the same path for the emulator ----

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                        ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2


@pytest.fixture(params=["emu", "host"])
def pin_env(request):
    """(LibBpf, bpffs directory): the emulator with its bpffs rooted at a fresh directory, or
    the live kernel with a bpffs mounted there for this test only (skipped where bpf() or
    mounting is not permitted)."""
    d = tempfile.mkdtemp(prefix="bpfemu-api-bpffs-")
    mounted = False
    try:
        if request.param == "host":
            reason = host_unavailable_reason()
            if reason:
                pytest.skip(f"live kernel bpf() not permitted here: {reason}")
            if _libc.mount(b"bpf", d.encode(), b"bpf", 0, None) != 0:
                pytest.skip(f"cannot mount a bpffs here: {os.strerror(ctypes.get_errno())}")
            mounted = True
            backend = HostKernel()
        else:
            backend = Emulator(nr_cpus=NCPU, seed=1, bpffs_root=d)
        lb = TrackingLib(backend)
        yield lb, d
        lb.close_all()
    finally:
        if mounted:
            _libc.umount2(d.encode(), MNT_DETACH)
        os.rmdir(d)


@pytest.fixture
def maps(backend):
    """A factory of Maps on the backend, all closed when the test ends, then every fd the
    test's calls left open (from_pin, from_id)."""
    made = []

    def make(*args, **kw):
        m = Map.create(backend, *args, **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.close()
    backend.close_all()
