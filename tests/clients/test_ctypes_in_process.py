"""libbpf.so.1 through ctypes in the same Python process as the Emulator that serves it
(bpfemu.intercept.inprocess.intercepted), as nobody and as root, against the same ctypes
client on the live kernel.

The runner (src/ctypes_inprocess.py) is a process of its own: once installed, the seccomp
filter stays for the life of the process, and this pytest process talks to the kernel.
"""
import os
import shutil
import sys

import pytest

from . import build, harness
from .test_real_clients import normalised, oracle

ctypes_client = pytest.mark.parametrize("client", ["ctypes"], indirect=True)


@pytest.fixture
def in_process_argv(client, client_dir):
    try:
        import bpfemu.intercept.inprocess  # noqa: F401
    except ImportError:
        pytest.skip("in-process interception (bpfemu.intercept.inprocess) is not in this checkout")
    runner = os.path.join(client_dir, "ctypes_inprocess.py")
    shutil.copy(os.path.join(build.SRC, "ctypes_inprocess.py"), runner)
    os.chmod(runner, 0o644)
    # This interpreter: the runner imports bpfemu. setpriv resolves its path before it
    # gives up root, so nobody runs it even where it is a link into /root.
    return [sys.executable, runner]


@ctypes_client
def test_ctypes_in_process_as_nobody_matches_kernel(client, in_process_argv, client_dir, request):
    spec, _ = client
    as_nobody = harness.is_root()          # otherwise this user is unprivileged already
    if as_nobody and harness.nobody_unavailable():
        pytest.skip(harness.nobody_unavailable())
    run = harness.run_directly(in_process_argv, client_dir, as_nobody=as_nobody)
    assert normalised(spec, run) == oracle(spec, request)


@ctypes_client
def test_ctypes_in_process_as_root_served_by_emulator(client, in_process_argv, client_dir,
                                                      request):
    spec, _ = client
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    run = harness.run_directly(in_process_argv, client_dir, as_nobody=False,
                               pause_hook=harness.kernel_map_names)
    assert run.pause_link is not None, f"the client never paused:\n{run.stderr}"
    assert not (spec.map_names & run.at_pause), "the kernel holds the client's maps"
    assert harness.KERNEL_MAP_LINK not in run.tree_fds, "a kernel map fd in the process"
    assert "memfd:" in run.pause_link and "bpf-map" in run.pause_link, run.pause_link
    assert normalised(spec, run) == oracle(spec, request)
