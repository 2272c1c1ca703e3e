"""Session fixtures for the real-client tests: each client is built once per session into one
directory that the user nobody can read and run from, and each kind of run (kernel, emulated
as nobody) is made once per client and shared by the tests that compare it."""
import os
import shutil

import pytest

from . import harness
from .build import Unavailable
from .clients import CLIENTS


@pytest.fixture(scope="session")
def client_dir():
    path = harness.world_readable_tmpdir("bpfemu-clients-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def built_clients(client_dir):
    return {}


@pytest.fixture
def client(request, built_clients, client_dir):
    """(spec, argv) of the client named by the test's parameter; skipped where absent."""
    spec = CLIENTS[request.param]
    if spec.name not in built_clients:
        try:
            built_clients[spec.name] = spec.builder(client_dir)
        except Unavailable as e:
            built_clients[spec.name] = e
    argv = built_clients[spec.name]
    if isinstance(argv, Unavailable):
        pytest.skip(str(argv))
    return spec, argv


@pytest.fixture(scope="session")
def kernel_runs():
    return {}


@pytest.fixture(scope="session")
def emulated_runs():
    return {}


@pytest.fixture
def kernel_run(client, client_dir, kernel_runs):
    """The client's run on the live kernel as root, with the kernel's map names at its pause."""
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    spec, argv = client
    if spec.name not in kernel_runs:
        kernel_runs[spec.name] = harness.run_on_kernel(argv, client_dir,
                                                       pause_hook=harness.kernel_map_names)
    return kernel_runs[spec.name]


@pytest.fixture(scope="session")
def bpfemu_run_ok():
    return harness.bpfemu_run_unavailable()


@pytest.fixture
def emulated_nobody_run(client, client_dir, emulated_runs, bpfemu_run_ok):
    """The client's run under `bpfemu run --trace`, supervisor and client as nobody (or as
    the current user when that is not root: either way without privilege). ``.trace`` is
    the trace of the calls served (test_traces.py replays it)."""
    if bpfemu_run_ok:
        pytest.skip(bpfemu_run_ok)
    spec, argv = client
    if spec.name not in emulated_runs:
        as_nobody = harness.is_root()
        if as_nobody and harness.nobody_unavailable():
            pytest.skip(harness.nobody_unavailable())
        trace = os.path.join(harness.fresh_pin_dir(client_dir, "trace-"), "calls.jsonl")
        run = harness.run_emulated(argv, client_dir, as_nobody=as_nobody,
                                   options=["--trace", trace])
        run.trace = trace
        emulated_runs[spec.name] = run
    return emulated_runs[spec.name]
