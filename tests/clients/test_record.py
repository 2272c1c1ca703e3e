"""Real clients under `bpfemu record -o TRACE -- CMD` (as root): the supervisor makes their
calls on the live kernel, so a client prints what it prints on the kernel, and the trace
replays on a fresh emulator with no difference.

Not replayed: bpftool's trace (its plain `map show` walks the machine-wide map ids, which on
a busy kernel hold other processes' maps, legitimately unlike a fresh emulator's).
"""
import importlib.util
import os
import subprocess
import sys

import pytest

from . import harness
from .test_real_clients import normalised, oracle

# The C client dup()s a map fd, fork()s and closes its maps' last fds (its id is gone after):
# its trace replays because every fd in it names its open file (a file token) and each
# release of an open file is a close record.
REPLAYED = ["go", "ctypes", "c"]


@pytest.fixture(scope="session")
def recorded_runs():
    return {}


@pytest.fixture
def recorded_run(client, client_dir, recorded_runs):
    """The client's run under `bpfemu record`, with ``.trace``."""
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    if importlib.util.find_spec("bpfemu.intercept.record") is None:
        pytest.skip("`bpfemu record -- CMD` (bpfemu.intercept.record) is not in this checkout")
    spec, argv = client
    if spec.name not in recorded_runs:
        trace = os.path.join(harness.fresh_pin_dir(client_dir, "record-"), "calls.jsonl")
        run = harness.run_recorded(argv, client_dir, trace)
        run.trace = trace
        recorded_runs[spec.name] = run
    return recorded_runs[spec.name]


@pytest.mark.parametrize("client", ["bpftool", "c", "go", "ctypes"], indirect=True)
def test_client_under_record_sees_the_kernel(client, recorded_run, request):
    spec, _ = client
    assert normalised(spec, recorded_run) == oracle(spec, request)


@pytest.mark.parametrize("client", REPLAYED, indirect=True)
def test_recorded_trace_replays_on_the_emulator(client, recorded_run):
    assert recorded_run.returncode == 0, recorded_run.stderr
    r = subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", recorded_run.trace],
                       capture_output=True, text=True, timeout=harness.TIMEOUT,
                       cwd=os.path.dirname(recorded_run.trace))
    assert r.returncode == 0 and "no differences" in r.stdout, r.stdout + r.stderr
