import os

import pytest
from hypothesis import HealthCheck, settings

from bpfemu import Emulator, HostKernel

from .support import NCPU, Client, host_unavailable_reason

settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_addoption(parser):
    group = parser.getgroup("bpfemu emulator variants")
    group.addoption("--htab-store", choices=["columnar", "simple"], default=None,
                    help="the store every Emulator's hash maps get (BPFEMU_HTAB_STORE): "
                         "the fast columnar one (default) or the simple one, the definition")
    group.addoption("--no-decoded-calls", action="store_true",
                    help="every Emulator without its decoded-call cache "
                         "(BPFEMU_DECODED_CALLS=0): each call runs the whole entry")


def pytest_configure(config):
    # Emulator() reads these when it is not told: every emulator of the run gets them.
    store = config.getoption("--htab-store")
    if store:
        os.environ["BPFEMU_HTAB_STORE"] = store
    if config.getoption("--no-decoded-calls"):
        os.environ["BPFEMU_DECODED_CALLS"] = "0"


def make_backend(kind: str, seed: int = 1):
    if kind == "host":
        reason = host_unavailable_reason()
        if reason:
            pytest.skip(f"live kernel bpf() not permitted here: {reason}")
        return HostKernel()
    return Emulator(nr_cpus=NCPU, seed=seed)


@pytest.fixture(params=["emu", "host"])
def backend(request):
    """The same test body on the emulator and on the live kernel."""
    b = make_backend(request.param)
    yield b
    if isinstance(b, Emulator):
        b.close_all()


@pytest.fixture
def client(backend):
    cl = Client(backend)
    yield cl
    cl.close_all()


@pytest.fixture
def both():
    """(emulator client, host client) for tests that compare the two directly."""
    emu = Client(make_backend("emu"))
    host = Client(make_backend("host"))
    yield emu, host
    emu.close_all()
    host.close_all()
