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


# --- long runs: opt-in ----------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="also run the tests marked `long` (as BPFEMU_LONG=1 does); "
                          "scripts/long-tests runs them")
    group = parser.getgroup("bpfemu emulator variants")
    group.addoption("--htab-store", choices=["columnar", "simple"], default=None,
                    help="the store every Emulator's hash maps get (BPFEMU_HTAB_STORE): "
                         "the fast columnar one (default) or the simple one, the definition")
    group.addoption("--no-decoded-calls", action="store_true",
                    help="every Emulator without its decoded-call cache "
                         "(BPFEMU_DECODED_CALLS=0): each call runs the whole entry")


def _long_wanted(config) -> bool:
    """--long, BPFEMU_LONG=1, or a -m expression that names the marker (then -m decides)."""
    return (config.getoption("--long") or os.environ.get("BPFEMU_LONG") == "1"
            or "long" in (config.getoption("markexpr") or ""))


def pytest_collection_modifyitems(config, items):
    """The tests marked `long` (quadratic or randomized runs of minutes) are deselected unless
    asked for, so that the README's test command stays under five minutes."""
    if _long_wanted(config):
        return
    keep = [item for item in items if item.get_closest_marker("long") is None]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("long")])
        items[:] = keep


# --- emulator variants ---------------------------------------------------------------------

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
