"""Real clients (bpftool, C on libbpf, Go on cilium/ebpf, libbpf.so.1 through ctypes) run
unmodified under `bpfemu run` as nobody, and print what they print on the live kernel as root.

Every client prints a transcript of its calls and their outcomes (tests/clients/src). The
oracle is the same client on the live kernel; where that cannot run (no root, no bpf()), the
transcript recorded on Linux 6.18 with 2 possible CPUs (tests/clients/expected/, written by
`python -m tests.clients.record`) stands in for it.
"""
import os

import pytest

from bpfemu.profile import host_possible_cpus

from . import harness
from .clients import CLIENTS

EXPECTED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected")
RECORDED_CPUS = 2                      # the recorded transcripts are of a 2-CPU machine
every_client = pytest.mark.parametrize("client", sorted(CLIENTS), indirect=True)


def recorded(name: str) -> str:
    with open(os.path.join(EXPECTED, f"{name}.txt")) as f:
        return f.read()


def normalised(spec, run) -> str:
    """The run's transcript, normalised. No client writes to stderr on the kernel, so none
    may under bpfemu (libbpf's warnings, a traceback or a message of the supervisor would
    show there)."""
    assert run.returncode == 0, f"{spec.name} exited {run.returncode}:\n{run.stderr}"
    assert run.stderr == "", f"{spec.name} wrote to stderr:\n{run.stderr}"
    return spec.normalise(run.stdout, run.pin_dir)


def oracle(spec, request) -> str:
    """The kernel's transcript of this client: a live run where possible, else the recorded."""
    if harness.kernel_unavailable() is None:
        return normalised(spec, request.getfixturevalue("kernel_run"))
    if host_possible_cpus() != RECORDED_CPUS:
        pytest.skip(f"no live kernel here ({harness.kernel_unavailable()}), and the recorded "
                    f"transcripts are of {RECORDED_CPUS} possible CPUs, not {host_possible_cpus()}")
    return recorded(spec.name)


@every_client
def test_kernel_run_matches_recorded_transcript(client, kernel_run):
    """The recorded transcript is still what the live kernel prints, and the check the
    emulated runs rely on (the kernel's map list at the client's pause) sees kernel maps."""
    spec, _ = client
    assert kernel_run.pause_link is not None, "the client never paused"
    assert spec.map_names <= kernel_run.at_pause, "its maps are not in the kernel's list"
    if spec.name != "bpftool":                  # the script holds no fd of its own
        assert harness.KERNEL_MAP_LINK in kernel_run.tree_fds
    if host_possible_cpus() != RECORDED_CPUS:
        pytest.skip(f"the recorded transcripts are of {RECORDED_CPUS} possible CPUs")
    assert normalised(spec, kernel_run) == recorded(spec.name)


@every_client
def test_as_nobody_under_bpfemu_run_matches_kernel(client, emulated_nobody_run, request):
    spec, _ = client
    assert normalised(spec, emulated_nobody_run) == oracle(spec, request)


@every_client
def test_as_root_under_bpfemu_run_served_by_emulator(client, client_dir, bpfemu_run_ok,
                                                     request):
    """Root could reach the kernel: while the client waits with its maps open and pinned, none
    of its maps is in the kernel's map list, no process of the tree (supervisor included)
    holds a kernel map fd, and the client's map fd is one of the emulator's memfds."""
    if bpfemu_run_ok:
        pytest.skip(bpfemu_run_ok)
    why = harness.kernel_unavailable()
    if why:
        pytest.skip(why)
    spec, argv = client
    run = harness.run_emulated(argv, client_dir, as_nobody=False,
                               pause_hook=harness.kernel_map_names)
    assert run.pause_link is not None, f"the client never paused:\n{run.stderr}"
    assert not (spec.map_names & run.at_pause), "the kernel holds the client's maps"
    assert harness.KERNEL_MAP_LINK not in run.tree_fds, "a kernel map fd in the supervised tree"
    if spec.name != "bpftool":                  # the script holds no fd of its own
        assert "memfd:" in run.pause_link and "bpf-map" in run.pause_link, run.pause_link
        assert run.pause_link in run.tree_fds   # the scan above reached the client
    assert normalised(spec, run) == oracle(spec, request)


@every_client
def test_as_nobody_without_bpfemu_run_gets_eperm(client, client_dir):
    """Without `bpfemu run`, nobody's bpf() calls reach the kernel and are refused: the runs
    above used no privilege."""
    if harness.nobody_unavailable():
        pytest.skip(harness.nobody_unavailable())
    try:
        with open("/proc/sys/kernel/unprivileged_bpf_disabled") as f:
            disabled = f.read().strip()
    except OSError as e:
        pytest.skip(f"kernel.unprivileged_bpf_disabled unreadable: {e}")
    if disabled == "0":
        pytest.skip("unprivileged bpf() is enabled here (kernel.unprivileged_bpf_disabled=0)")
    spec, argv = client
    run = harness.run_as_nobody_on_kernel(argv, client_dir)
    assert any(line.startswith(spec.refused) for line in run.stdout.splitlines()), \
        run.stdout + run.stderr
