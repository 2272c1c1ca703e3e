"""pytest fixtures for testing code that uses BPF maps (registered through the pytest11 entry point).

- ``bpf_emulator``: a fresh Emulator per test, every fd closed afterwards.
- ``bpf_backend``: the test runs twice, on the emulator and on the live kernel; the kernel run
  is skipped (never failed) where bpf() is not permitted. Either way the fds the test leaves
  open are closed afterwards (``close_all()``), and ``cpu``/``nr_cpus`` work on both (on the
  kernel, setting ``cpu`` pins the test's thread; the CPU mask is restored afterwards).
- ``@pytest.mark.bpf_cpu(n)``: the test runs pinned to CPU n (os.sched_setaffinity), and the
  emulator's current CPU is n as well, so CPU-dependent behaviour (LRU eviction, per-CPU slots)
  matches between the two backends. The test is skipped where CPU n cannot be used.
"""
import os

import pytest

from .emulator import Emulator
from .host import HostKernel

_HOST_REASON = pytest.StashKey[object]()
_UNCHECKED = object()


def pytest_configure(config):
    config.addinivalue_line("markers", "bpf_cpu(n): run pinned to CPU n, with the emulator on CPU n")
    config.stash[_HOST_REASON] = _UNCHECKED


def _host_unavailable(config):
    """Why the live kernel's bpf() cannot be used (None if it can); asked once per session."""
    reason = config.stash.get(_HOST_REASON, _UNCHECKED)
    if reason is _UNCHECKED:
        reason = HostKernel.available()
        config.stash[_HOST_REASON] = reason
    return reason


def _marked_cpu(request):
    marker = request.node.get_closest_marker("bpf_cpu")
    if marker is None:
        return None
    cpu = marker.args[0] if marker.args else marker.kwargs.get("cpu")
    if not isinstance(cpu, int) or isinstance(cpu, bool) or cpu < 0:
        pytest.fail(f"bpf_cpu needs a CPU number, e.g. @pytest.mark.bpf_cpu(1); got {marker}",
                    pytrace=False)
    return cpu


@pytest.fixture(autouse=True)
def _bpf_cpu_pin(request):
    """Pins a test marked bpf_cpu(n) to CPU n for its duration, then restores the mask."""
    cpu = _marked_cpu(request)
    if cpu is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as e:
        pytest.skip(f"cannot pin to CPU {cpu}: {e.strerror}")
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def _emulator(request):
    emu = Emulator()
    cpu = _marked_cpu(request)
    if cpu is not None:
        if cpu >= emu.nr_cpus:
            pytest.skip(f"CPU {cpu} is not a possible CPU here (0..{emu.nr_cpus - 1})")
        emu.cpu = cpu
    return emu


@pytest.fixture
def bpf_emulator(request, _bpf_cpu_pin):
    """A fresh bpfemu.Emulator (on the CPU of @pytest.mark.bpf_cpu, if any)."""
    emu = _emulator(request)
    yield emu
    emu.close_all()


@pytest.fixture(params=["emulator", "kernel"])
def bpf_backend(request, _bpf_cpu_pin):
    """The emulator, then the live kernel (skipped where bpf() is not permitted)."""
    if request.param == "kernel":
        reason = _host_unavailable(request.config)
        if reason:
            pytest.skip(f"the live kernel's bpf() is not available: {reason}")
        host = HostKernel()
        saved = os.sched_getaffinity(0)         # a test may set host.cpu (pins the thread)
        try:
            yield host
        finally:
            host.close_all()                    # the fds the test left open, as on the emulator
            os.sched_setaffinity(0, saved)
        return
    emu = _emulator(request)
    yield emu
    emu.close_all()


# Interception's fixtures (bpf_intercepted, bpf_run): bpfemu/intercept/fixtures.py.
from .intercept.fixtures import bpf_intercepted, bpf_run  # noqa: E402,F401
