"""pytest fixtures for testing code that uses BPF maps (registered through the pytest11 entry point).

- ``bpf_emulator``: a fresh Emulator per test, every fd closed afterwards.
- ``bpf_backend``: the test runs twice, on the emulator and on the live kernel; the kernel run
  is skipped (never failed) where bpf() is not permitted.
- ``@pytest.mark.bpf_cpu(n)``: the test runs pinned to CPU n (os.sched_setaffinity), and the
  emulator's current CPU is n as well, so CPU-dependent behaviour (LRU eviction, per-CPU slots)
  matches between the two backends.
"""
import os

import pytest

from .emulator import Emulator
from .host import HostKernel

_host_reason = []


def pytest_configure(config):
    config.addinivalue_line("markers", "bpf_cpu(n): run pinned to CPU n, with the emulator on CPU n")


def _host_unavailable():
    if not _host_reason:
        _host_reason.append(HostKernel.available())
    return _host_reason[0]


class _Pinned:
    """Pins the process to one CPU for the test's duration, then restores the old mask."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.saved = None

    def __enter__(self):
        if self.cpu is not None:
            self.saved = os.sched_getaffinity(0)
            try:
                os.sched_setaffinity(0, {self.cpu})
            except OSError as e:
                pytest.skip(f"cannot pin to CPU {self.cpu}: {e}")
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.sched_setaffinity(0, self.saved)


def _marked_cpu(request):
    marker = request.node.get_closest_marker("bpf_cpu")
    return marker.args[0] if marker and marker.args else None


def _emulator(request):
    emu = Emulator()
    cpu = _marked_cpu(request)
    if cpu is not None:
        emu.cpu = cpu
    return emu


@pytest.fixture
def bpf_emulator(request):
    """A fresh bpfemu.Emulator (honours @pytest.mark.bpf_cpu)."""
    emu = _emulator(request)
    with _Pinned(_marked_cpu(request)):
        yield emu
    emu.close_all()


@pytest.fixture(params=["emulator", "kernel"])
def bpf_backend(request):
    """The emulator, then the live kernel (skipped where bpf() is not permitted)."""
    if request.param == "kernel":
        reason = _host_unavailable()
        if reason:
            pytest.skip(f"the live kernel's bpf() is not available: {reason}")
        with _Pinned(_marked_cpu(request)):
            yield HostKernel()
        return
    emu = _emulator(request)
    with _Pinned(_marked_cpu(request)):
        yield emu
    emu.close_all()
