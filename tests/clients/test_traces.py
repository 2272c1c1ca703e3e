"""Traces of real clients: `bpfemu run --trace` as nobody records every call it serves, and
`bpfemu replay` replays the trace with no difference on a fresh emulator and, for clients
whose calls do not depend on the rest of the machine, on the live kernel.

Not replayed on the kernel: bpftool's plain `map show` walks the machine-wide map ids, where
the kernel has other processes' maps (MAP_GET_NEXT_ID answers differ, legitimately).
"""
import os
import subprocess
import sys

import pytest

from . import harness
from .clients import CLIENTS

# The C client dup()s a map fd and fork()s: its trace replays because every fd in it names
# its open file (a file token), which dup() and fork() share.
TRACED = ["bpftool", "c", "go", "ctypes"]
ON_KERNEL = ["go", "ctypes", "c"]


@pytest.fixture
def client_trace(client, emulated_nobody_run):
    """The trace of the client's run as nobody under `bpfemu run --trace` (the run that
    test_real_clients compares with the kernel)."""
    assert emulated_nobody_run.returncode == 0, emulated_nobody_run.stderr
    return emulated_nobody_run.trace


def replay(trace: str, backend: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bpfemu", "replay", "-q", "--backend", backend,
                           trace], capture_output=True, text=True, timeout=harness.TIMEOUT,
                          cwd=os.path.dirname(trace))


@pytest.mark.parametrize("client", TRACED, indirect=True)
def test_trace_replays_on_the_emulator(client, client_trace):
    r = replay(client_trace, "emulator")
    assert r.returncode == 0 and "no differences" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("client", ON_KERNEL, indirect=True)
def test_trace_replays_on_the_kernel(client, client_trace):
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    r = replay(client_trace, "kernel")
    assert r.returncode == 0 and "no differences" in r.stdout, r.stdout + r.stderr


def test_every_client_is_traced():
    names = {p if isinstance(p, str) else p.values[0] for p in TRACED}
    assert names == set(CLIENTS)
